"""Fixtures shared by the test files."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest


@pytest.hookimpl(tryfirst=True)  # before `-m cuda` selects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that need an NVIDIA GPU carry the ``cuda`` marker (or are named ``test_cuda_*``, which
    gives it): ``pytest -m cuda`` runs them all (``bash bench/gpu_check.sh`` does), and without a
    CUDA GPU they are skipped, saying so."""
    needs_gpu = []
    for item in items:
        if item.name.startswith("test_cuda_") and item.get_closest_marker("cuda") is None:
            item.add_marker(pytest.mark.cuda)
        if item.get_closest_marker("cuda") is not None:
            needs_gpu.append(item)
    if needs_gpu:
        import torch

        if not torch.cuda.is_available():
            skip = pytest.mark.skip(reason="needs an NVIDIA GPU with CUDA (bash bench/gpu_check.sh runs these)")
            for item in needs_gpu:
                item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """An i2i cache (downloads, TensorRT engines) for the whole run, never the user's: module fixtures and
    the subprocesses they start (``i2i serve``) use it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("I2I_CACHE_DIR", str(tmp_path_factory.mktemp("i2i-cache")))
        yield


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from an empty i2i cache of its own."""
    monkeypatch.setenv("I2I_CACHE_DIR", str(tmp_path_factory.mktemp("i2i-cache")))


@pytest.fixture
def no_home(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """``no_home()``: from then on there is no home directory, as in a bare container (HOME unset, no
    passwd entry: ``Path.home()`` raises) and no I2I_CACHE_DIR or XDG_CACHE_HOME to fall back on."""

    def home(cls: type) -> Path:
        raise RuntimeError("Could not determine home directory.")

    def take_it_away() -> None:
        monkeypatch.delenv("I2I_CACHE_DIR", raising=False)
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        monkeypatch.setattr(Path, "home", classmethod(home))

    return take_it_away


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch intra-op thread for a module of tiny networks.

    On a 2-core machine shared with other processes, two intra-op threads per process thrash:
    measured 0.1 s against 1-9 s per tiny training step.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def clean_plugin_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No block/allow list from the caller's environment, and a fresh plugin host before and after."""
    from i2i import plugins

    monkeypatch.delenv("I2I_BLOCK_PLUGINS", raising=False)
    monkeypatch.delenv("I2I_PLUGINS", raising=False)
    plugins.reset()
    yield
    plugins.reset()


@pytest.fixture
def record_true(monkeypatch: pytest.MonkeyPatch):
    """``record_true(module, name)``: wrap the predicate ``module.name`` so that each call returning
    True records its arguments in the list it returns (which path a layer took, say)."""

    def wrap(module: object, name: str) -> list[tuple]:
        calls: list[tuple] = []
        real = getattr(module, name)

        def spy(*args: object, **kwargs: object) -> bool:
            use = real(*args, **kwargs)
            if use:
                calls.append(args)
            return use

        monkeypatch.setattr(module, name, spy)
        return calls

    return wrap


@pytest.fixture(autouse=True)
def strict_metrics_json(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every metrics.jsonl a test writes under its tmp_path is strict JSON, line by line (no NaN)."""
    # asked for before the test (when it uses tmp_path), so tmp_path is still there after it
    root = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if root is None:
        return
    import json

    for path in root.rglob("metrics.jsonl"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            try:
                json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
            except ValueError as exc:
                pytest.fail(f"{path}:{n} is not strict JSON ({exc}): {line[:120]}")
