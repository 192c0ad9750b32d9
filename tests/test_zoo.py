"""The model zoo: official key layouts load strictly, verified downloads from a loopback server,
the cache, offline errors, and the real vintagify CycleGAN translating real horses via the CLI."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from i2i import plugins
from i2i.cli import cli
from i2i.errors import I2IError
from i2i.registry import ModelSpec, models
from i2i.loader import load
from i2i.zoo import cache_path, cache_status

SHARED = Path(__file__).resolve().parents[2] / "shared"
LAYOUTS = SHARED / "weights" / "key_layouts"
VINTAGIFY = SHARED / "weights" / "vintagify_cyclegan" / "G_A2B_epoch33.pth"
HORSES = SHARED / "datasets" / "horses"
needs = pytest.mark.skipif(not LAYOUTS.is_dir(), reason="../shared/weights not present")


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("I2I_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("I2I_OFFLINE", raising=False)


pytestmark = pytest.mark.usefixtures("one_thread")


def layout_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the key names and shapes of an official checkpoint."""
    layout = json.loads((LAYOUTS / f"{name}.json").read_text())
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in layout["keys"].items():
        sd[key] = torch.tensor(3) if key.endswith("num_batches_tracked") else torch.randn(shape, generator=g)
        if key.endswith("running_var"):
            sd[key] = sd[key].abs() + 0.5
    assert len(sd) == layout["num_tensors"]
    return sd


def assert_loaded(module: torch.nn.Module, sd: dict[str, torch.Tensor]) -> None:
    own = module.state_dict()
    assert set(own) == set(sd)
    assert all(torch.equal(own[k], sd[k]) for k in sd), "weights were not the file's"


# ---------------------------------------------------------------------------------------- official layouts


def test_zoo_lists_all_official_generators() -> None:
    names = models().names()
    cyclegan = [n for n in names if n.startswith("cyclegan_") and "resnet_" not in n]
    assert len(cyclegan) == 18 + 2  # the 18 official files + cyclegan_h2z / cyclegan_z2h aliases
    assert len([n for n in names if n.startswith("pix2pix_")]) == 5
    h2z = models().get("cyclegan_h2z")
    assert h2z.url == "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/horse2zebra.pth"
    assert (h2z.generator, h2z.generator_kwargs["norm"], h2z.license, h2z.source) == (
        "resnet_9blocks", "instance", models().get("pix2pix_day2night").license, "https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix")
    # aliases share the cached file
    assert cache_path("cyclegan_h2z") == cache_path("cyclegan_horse2zebra")


@needs
def test_official_cyclegan_layout_loads_strictly(tmp_path: Path) -> None:
    sd = layout_state("cyclegan_resnet_9blocks_instancenorm")
    legacy = dict(sd)  # what files saved by PyTorch < 0.4 also hold for InstanceNorm
    for i in (2, 5, 8):
        legacy[f"model.{i}.running_mean"] = torch.zeros(sd["model.1.bias"].shape if i == 2 else sd[f"model.{i - 1}.bias"].shape)
        legacy[f"model.{i}.running_var"] = torch.ones_like(legacy[f"model.{i}.running_mean"])
    legacy["model.10.conv_block.2.num_batches_tracked"] = torch.tensor(5)
    for variant, obj in {"plain": sd, "legacy": legacy, "wrapped": {"state_dict": {f"module.{k}": v for k, v in sd.items()}}}.items():
        path = tmp_path / f"{variant}.pth"
        torch.save(obj, path)
        module, meta = (g := load("cyclegan_h2z", weights=str(path), device='cpu')).module, g.meta
        assert_loaded(module, sd)
        assert not module.training
        assert (meta.name, meta.kwargs["norm"], meta.size_multiple, meta.info["zoo"]) == ("resnet_9blocks", "instance", 4, "cyclegan_h2z")


@needs
def test_official_pix2pix_layout_loads_strictly(tmp_path: Path) -> None:
    sd = layout_state("pix2pix_unet_256_batchnorm")
    old = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}  # saved before PyTorch 0.4
    torch.save(old, tmp_path / "old.pth")
    module, meta = (g := load("pix2pix_facades_label2photo", weights=str(tmp_path / "old.pth"), device='cpu')).module, g.meta
    own = module.state_dict()
    assert all(torch.equal(own[k], sd[k]) for k in old)
    assert (meta.name, meta.size_multiple, meta.method) == ("unet_256", 256, "pix2pix")


@needs
def test_wrong_weights_name_the_keys(tmp_path: Path) -> None:
    sd = layout_state("cyclegan_resnet_9blocks_instancenorm")
    del sd["model.26.bias"]
    sd["model.99.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(I2IError, match=r"missing keys: model\.26\.bias.*unexpected keys: model\.99\.weight"):
        load("cyclegan_h2z", weights=str(tmp_path / "bad.pth"))
    six = {k: v for k, v in layout_state("cyclegan_resnet_9blocks_instancenorm").items()
           if not any(k.startswith(f"model.{i}.") for i in (16, 17, 18))}
    torch.save(six, tmp_path / "six.pth")
    with pytest.raises(I2IError, match="6 residual blocks.*cyclegan_resnet_6blocks"):
        load("cyclegan_h2z", weights=str(tmp_path / "six.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(I2IError, match=r"junk\.pth is text, not a PyTorch weights file"):
        load("cyclegan_h2z", weights=str(tmp_path / "junk.pth"))
    with pytest.raises(I2IError, match=r"did you mean: cyclegan_h2z"):
        load("cyclegan_h2zz")


# ---------------------------------------------------------------------------------------- loopback downloads


def tiny_reference_file() -> tuple[bytes, dict[str, torch.Tensor]]:
    """A tiny resnet_6blocks in the reference layout with legacy InstanceNorm stats, as bytes."""
    from i2i.registry import create_generator
    import io

    torch.manual_seed(1)
    sd = create_generator("resnet_6blocks", ngf=8).state_dict()
    legacy = dict(sd, **{"model.2.running_mean": torch.zeros(8), "model.2.running_var": torch.ones(8)})
    buf = io.BytesIO()
    torch.save(legacy, buf)
    return buf.getvalue(), sd


PAYLOAD, TINY_SD = tiny_reference_file()


class Handler(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        Handler.hits.append(self.path)
        body = PAYLOAD[: len(PAYLOAD) // 2] if self.path.startswith("/short/") else PAYLOAD
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    Handler.hits = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def zoo_entry(server: str) -> Iterator[callable]:
    """Register test entries (served by the loopback server) for the duration of one test."""
    from i2i_cyclegan.zoo import make_resnet_converter

    def add(name: str, path: str, sha256: str | None = None, size: int | None = None) -> ModelSpec:
        spec = ModelSpec(name, "resnet_6blocks", f"{server}{path}", plugin="test", generator_kwargs={"ngf": 8},
                         sha256=sha256, size_bytes=size, converter=make_resnet_converter(6), method="cyclegan",
                         license="MIT", source="test")
        models().add(spec)
        return spec

    yield add
    plugins.reset()  # forget the test entries


def test_download_verifies_caches_and_translates(zoo_entry, server: str, tmp_path: Path) -> None:
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    spec = zoo_entry("tiny_zoo", "/models/tiny.pth", sha256=sha, size=len(PAYLOAD))
    assert not cache_status(spec)
    Image.fromarray(np.full((30, 22, 3), 120, np.uint8)).save(tmp_path / "in.png")
    result = CliRunner().invoke(cli, ["translate", str(tmp_path / "in.png"), "--model", "tiny_zoo", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "in.png") as out:
        assert out.size == (22, 30)  # padded to the multiple of 4, cropped back
    assert Handler.hits == ["/models/tiny.pth"]
    cached = cache_path(spec)
    assert cached.read_bytes() == PAYLOAD and cache_status(spec)
    listing = CliRunner().invoke(cli, ["list", "models", "tiny_zoo"])
    assert listing.exit_code == 0 and " yes " in listing.output and "MIT" in listing.output, listing.output
    module, meta = (g := load("tiny_zoo", device='cpu')).module, g.meta  # from the cache: no second request
    assert Handler.hits == ["/models/tiny.pth"]
    assert_loaded(module, TINY_SD)
    assert meta.info["weights"] == spec.url and meta.info["license"] == "MIT"


def test_checksum_mismatch_and_truncated_download_leave_nothing(zoo_entry) -> None:
    zoo_entry("bad_sha", "/models/bad.pth", sha256="0" * 64)
    with pytest.raises(I2IError, match="failed its checksum.*--weights FILE"):
        load("bad_sha")
    zoo_entry("short", "/short/tiny.pth")
    with pytest.raises(I2IError, match="cut short.*--weights FILE"):
        load("short")
    for name in ("bad_sha", "short"):
        folder = cache_path(name).parent
        assert not cache_status(name)
        assert not folder.exists() or not any(folder.iterdir()), "a failed download left a file behind"


def test_offline_error_names_url_and_weights(zoo_entry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    spec = zoo_entry("tiny_offline", "/models/tiny.pth")
    monkeypatch.setenv("I2I_OFFLINE", "1")
    with pytest.raises(I2IError) as err:
        load("tiny_offline")
    assert spec.url in str(err.value) and "--weights FILE" in str(err.value)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    result = CliRunner().invoke(cli, ["translate", str(tmp_path / "x.png"), "--model", "tiny_offline"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert spec.url in result.output and "--weights" in result.output
    # a refused connection is as clear
    monkeypatch.delenv("I2I_OFFLINE")
    models().add(ModelSpec("unreachable", "resnet_6blocks", "http://127.0.0.1:9/x.pth", generator_kwargs={"ngf": 8}))
    with pytest.raises(I2IError, match=r"cannot download http://127\.0\.0\.1:9/x\.pth.*--weights FILE"):
        load("unreachable")


def test_import_entry_needs_weights() -> None:
    with pytest.raises(I2IError, match="no download; pass the weights file with --weights FILE"):
        load("cyclegan_resnet_9blocks")


# ---------------------------------------------------------------------------------------- vintagify


@pytest.mark.skipif(not VINTAGIFY.is_file() or not HORSES.is_dir(), reason="vintagify weights / horses not present")
def test_vintagify_translates_horses_deterministically(tmp_path: Path) -> None:
    horses = sorted(HORSES.glob("*.jpg"))[:1]
    outputs = []
    for run in ("a", "b"):
        args = ["translate", *map(str, horses), "--model", "cyclegan_resnet_9blocks", "--weights", str(VINTAGIFY),
                "--out", str(tmp_path / run), "--device", "cpu"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        outputs.append([np.asarray(Image.open(tmp_path / run / f"{h.stem}.png")) for h in horses])
    for first, second, src in zip(*outputs, horses):
        source = np.asarray(Image.open(src).convert("RGB"))
        assert first.shape == source.shape
        assert np.array_equal(first, second), "the same input gave different outputs"
        diff = np.abs(first.astype(int) - source.astype(int)).mean()
        assert 3 < diff < 80, f"output is neither a copy nor noise (mean |diff| {diff:.1f})"
        # the real weights keep the picture: outputs correlate strongly with the input
        corr = np.corrcoef(first.mean(2).ravel(), source.mean(2).ravel())[0, 1]
        assert corr > 0.8, corr
    module, meta = (g := load("cyclegan_resnet_9blocks", weights=str(VINTAGIFY), device='cpu')).module, g.meta
    assert meta.kwargs["norm"] == "instance_affine"  # read from the file: no flag needed
