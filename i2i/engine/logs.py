"""What a run writes besides checkpoints: metrics.jsonl, sample grids, TensorBoard, progress.

metrics.jsonl is strict JSON, one object per logged step (and one per validation, ``"split": "val"``):
a value that is not finite (the mean loss of a window with a skipped step) is ``null``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm


class RunLog:
    """metrics.jsonl (+ TensorBoard when installed) and a progress bar (plain lines off a TTY)."""

    def __init__(self, run_dir: Path, total_steps: int, start_step: int, enabled: bool) -> None:
        self.enabled = enabled
        self.run_dir = run_dir
        self.tty = sys.stderr.isatty()
        if enabled:
            _drop_records_after(run_dir / "metrics.jsonl", start_step)
        self.metrics = open(run_dir / "metrics.jsonl", "a") if enabled else None
        self.bar = tqdm(total=total_steps, initial=start_step, unit="it", dynamic_ncols=True, disable=not (enabled and self.tty))
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                # purge_step: events a killed run wrote past the checkpoint it resumes from are dropped
                self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=start_step or None)
            except Exception:  # tensorboard is optional
                self.tb = None

    def step(self) -> None:
        self.bar.update(1)

    def write(self, record: dict[str, Any]) -> None:
        """A training row: to metrics.jsonl and TensorBoard, and the progress line."""
        if not self.enabled:
            return
        self.write_row(record)
        losses = {k: v for k, v in record.items() if k.startswith(("G_", "D_", "loss"))}
        if self.tty:
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
        else:
            text = " ".join(f"{k}={v:.4g}" for k, v in losses.items())
            print(f"[{time.strftime('%H:%M:%S')}] step {record['step']} epoch {record['epoch']} "
                  f"{record['images_per_s']:.2f} img/s lr {record['lr']:.3g} {text}", file=sys.stderr, flush=True)

    def write_row(self, record: dict[str, Any]) -> None:
        """Any row (a validation's: ``"split": "val"``) to metrics.jsonl and TensorBoard, without the
        progress line. Strict JSON: a non-finite value (a loss of a skipped step) is written as null."""
        if not self.enabled:
            return
        assert self.metrics is not None
        strict = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
        self.metrics.write(json.dumps(strict, allow_nan=False) + "\n")
        self.metrics.flush()
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(k, v, record["step"])

    def info(self, text: str) -> None:
        if self.enabled:
            tqdm.write(text, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
        if self.metrics:
            self.metrics.close()
        if self.tb is not None:
            self.tb.close()


def _drop_records_after(path: Path, step: int) -> None:
    """Keep the records of steps up to ``step`` (where a resumed run goes on from), so each step is
    logged once; a line a kill cut short is dropped too. Rewritten atomically."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept))
    os.replace(tmp, path)


@torch.no_grad()
def save_grid(path: Path, columns: list[torch.Tensor], value_range: tuple[float, float], max_rows: int = 4) -> None:
    """One row per batch item: input | output | target (channels broadcast to RGB, sizes matched)."""
    from torchvision.utils import save_image
    import torch.nn.functional as F

    lo, hi = value_range
    height = max(c.shape[-2] for c in columns)
    width = max(c.shape[-1] for c in columns)
    tiles = []
    for c in columns:
        c = c[:max_rows].detach().float().cpu()
        c = ((c - lo) / (hi - lo)).clamp(0, 1)
        if c.shape[1] == 1:
            c = c.repeat(1, 3, 1, 1)
        c = c[:, :3]
        if c.shape[-2:] != (height, width):
            c = F.interpolate(c, size=(height, width), mode="nearest")
        tiles.append(c)
    grid = torch.stack(tiles, dim=1).flatten(0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, str(path), nrow=len(columns), padding=2)
