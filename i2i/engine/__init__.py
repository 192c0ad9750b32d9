"""The shared adversarial training engine."""

from .trainer import Trainer, build_method, train

__all__ = ["Trainer", "build_method", "train"]
