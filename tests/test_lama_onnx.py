"""LaMa (spandrel's architecture) as ONNX, and the big-lama zoo entry.

- the real-DFT Fourier unit computes what torch.fft does;
- a LaMa with random weights exports through `i2i export`'s exporter and onnxruntime matches PyTorch
  within 1e-4 at two sizes;
- a file of big-lama's published layout (a TorchScript archive made as advimman/lama's bin/to_jit.py
  makes it: __torch__.JITWrapper, keys model.generator.model.*) inpaints through `i2i translate --mask` (PyTorch and ONNX) and `i2i serve`, returning
  the known pixels unchanged; it downloads as a zoo entry from 127.0.0.1, and `--set init` trains from it.
"""

from __future__ import annotations

import hashlib
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("spandrel")

import i2i  # noqa: E402
from i2i.cli import cli  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "inpaint"
FACE = SHARED / "celeba_hq"
MASKS = SHARED / "masks"


class DefaultInpaintingTrainingModule(torch.nn.Module):
    """advimman/lama's training module, as far as to_jit.py uses it: the LaMa generator is ``generator``."""

    def __init__(self, generator: torch.nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.generator(image * (1 - mask), mask)


class JITWrapper(torch.nn.Module):
    """advimman/lama bin/to_jit.py's wrapper, defined at the top level of the script it runs as."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model(image, mask)


# TorchScript names classes by module: to_jit.py runs as a script (__main__ -> __torch__.JITWrapper),
# and the training module comes from lama's package
JITWrapper.__module__ = "__main__"
DefaultInpaintingTrainingModule.__module__ = "saicinpainting.training.trainers.default"


@pytest.fixture(scope="module")
def lama_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """big-lama.pt made as advimman/lama's bin/to_jit.py makes it (lama PR #63): torch.jit.trace of a
    script-level ``JITWrapper`` whose ``model.generator`` is LaMa's FFCResNetGenerator, so the archive
    records ``__torch__.JITWrapper`` and keys ``model.generator.model.*`` (random weights, BatchNorm
    statistics made non-trivial)."""
    from spandrel.architectures.LaMa import LaMa

    torch.manual_seed(0)
    lama = LaMa(in_nc=4, out_nc=3).eval()
    for m in lama.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("lama") / "big-lama-layout.pt"
    with torch.no_grad():
        traced = torch.jit.trace(JITWrapper(DefaultInpaintingTrainingModule(lama.model)).eval(),
                                 (torch.rand(1, 3, 32, 32), torch.zeros(1, 1, 32, 32)))
    traced.save(str(path))
    import zipfile

    with zipfile.ZipFile(path) as z:  # what the real file records, so the fixture cannot drift from it
        assert b"__torch__\nJITWrapper" in z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    assert next(iter(traced.state_dict())).startswith("model.generator.model.")
    return path


def test_lama_keys_of_a_training_checkpoint(tmp_path: Path) -> None:
    """advimman/lama's best.ckpt: generator.model.* beside discriminator.* in a state_dict; the generator loads."""
    from spandrel.architectures.LaMa import LaMa

    lama = LaMa(in_nc=4, out_nc=3).eval()
    state = {f"generator.{k[len('model.'):]}": v for k, v in lama.state_dict().items()}
    state["discriminator.model0.0.weight"] = torch.zeros(4, 3, 3, 3)
    torch.save({"state_dict": state, "epoch": 1}, tmp_path / "best.ckpt")
    g = i2i.load(tmp_path / "best.ckpt", device="cpu")
    assert g.meta.info["architecture"] == "LaMa"


@pytest.fixture(scope="module")
def lama_onnx(lama_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from i2i_export.exporter import export_onnx

    g = i2i.load(lama_file, device="cpu")
    return export_onnx(g.module, g.meta, tmp_path_factory.mktemp("lama_onnx") / "lama.onnx")


@pytest.fixture(scope="module")
def face_and_hole(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """A real face (CelebA-HQ) and a real irregular hole (NVIDIA masks), 96x96 to keep LaMa quick on a CPU."""
    if not FACE.is_dir() or not MASKS.is_dir():
        pytest.skip("shared inpainting data not present")
    d = tmp_path_factory.mktemp("face")
    with Image.open(sorted(FACE.rglob("*.jpg"))[0]) as im:
        face = np.asarray(im.convert("RGB").resize((96, 96), Image.BICUBIC))
    with Image.open(sorted(MASKS.glob("*.png"))[600]) as im:  # ~20% holes (file order = rising hole ratio)
        hole = np.asarray(im.convert("L").resize((96, 96), Image.NEAREST))
    Image.fromarray(face).save(d / "face.png")
    Image.fromarray(hole).save(d / "hole.png")
    assert 0.05 < (hole > 0).mean() < 0.6
    return d / "face.png", d / "hole.png", face, hole > 0


def translate(args: list[str], out: Path) -> np.ndarray:
    res = CliRunner().invoke(cli, ["translate", *args, "--out", str(out)])
    assert res.exit_code == 0, res.output
    (only,) = list(out.iterdir())
    with Image.open(only) as im:
        return np.asarray(im.convert("RGB"))


def test_real_dft_fourier_unit_matches_torch_fft() -> None:
    from spandrel.architectures.LaMa.__arch.LaMa import FourierUnit

    from i2i_spandrel.fft import RealDFTFourierUnit

    torch.manual_seed(0)
    unit = FourierUnit(6, 6).eval()
    unit.bn.running_mean.uniform_(-1, 1)
    unit.bn.running_var.uniform_(0.5, 2)
    dft = RealDFTFourierUnit(unit).eval()
    for h, w in ((8, 8), (7, 9), (12, 5), (1, 6)):  # even and odd sides: the W/2 bin counted once or not at all
        x = torch.randn(2, 6, h, w)
        with torch.no_grad():
            assert (unit(x) - dft(x)).abs().max() < 1e-5, (h, w)


def test_lama_onnx_matches_pytorch_at_two_sizes(lama_file: Path, lama_onnx: Path) -> None:
    import onnx
    import onnxruntime as ort

    g = i2i.load(lama_file, device="cpu")
    ops = {node.op_type for node in onnx.load(str(lama_onnx), load_external_data=False).graph.node}
    assert "MatMul" in ops and not any("fft" in op.lower() or op == "DFT" for op in ops)
    sess = ort.InferenceSession(str(lama_onnx), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(3)
    for batch, h, w in ((1, 64, 48), (2, 40, 72)):  # neither is the export's sample size
        image = torch.rand(batch, 3, h, w, generator=gen)
        mask = (torch.rand(batch, 1, h, w, generator=gen) > 0.7).float()
        with torch.no_grad():
            ref = g.module(image, mask).numpy()
        got = sess.run(["output"], {"image": image.numpy(), "mask": mask.numpy()})[0]
        assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-4, (h, w, np.abs(got - ref).max())
        assert np.abs(ref - image.numpy()).max() > 1e-2  # the hole was really filled by the network


def test_translate_with_a_mask_keeps_the_known_pixels(lama_file: Path, lama_onnx: Path, face_and_hole,
                                                       tmp_path: Path) -> None:
    face_png, hole_png, face, hole = face_and_hole
    outs = {
        "zoo entry + local file": translate([str(face_png), "--mask", str(hole_png), "--model", "big-lama",
                                             "--weights", str(lama_file)], tmp_path / "a"),
        "the file itself": translate([str(face_png), "--mask", str(hole_png), "--weights", str(lama_file)], tmp_path / "b"),
        "its ONNX export": translate([str(face_png), "--mask", str(hole_png), "--model", str(lama_onnx)], tmp_path / "c"),
    }
    for door, out in outs.items():
        assert out.shape == face.shape, door
        assert np.array_equal(out[~hole], face[~hole]), door  # known pixels come back exactly
        assert np.abs(out[hole].astype(int) - face[hole].astype(int)).mean() > 1, door  # holes are filled
    assert np.abs(outs["its ONNX export"].astype(int) - outs["the file itself"].astype(int)).max() <= 1


def test_serve_inpaints_with_the_lama_onnx(lama_onnx: Path, face_and_hole) -> None:
    import httpx

    from i2i_export.server import create_app, serve_in_thread

    face_png, hole_png, face, hole = face_and_hole
    app = create_app(lama_onnx, device="cpu")
    with serve_in_thread(app, port=0) as url, httpx.Client(base_url=url, timeout=120) as c:
        r = c.post("/v1/translate", files={"image": ("f.png", face_png.read_bytes(), "image/png"),
                                           "mask": ("m.png", hole_png.read_bytes(), "image/png")})
        assert r.status_code == 200, r.text
        out = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    assert np.array_equal(out[~hole], face[~hole])


class _Files(BaseHTTPRequestHandler):
    path_on_disk: Path | None = None
    hits: list[str] = []

    def do_GET(self) -> None:
        _Files.hits.append(self.path)
        data = self.path_on_disk.read_bytes()  # type: ignore[union-attr]
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def loopback(lama_file: Path) -> Iterator[str]:
    _Files.path_on_disk, _Files.hits = lama_file, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_big_lama_downloads_verified_from_loopback(lama_file: Path, loopback: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from i2i import plugins
    from i2i.registry import models
    from i2i.zoo import cache_path

    monkeypatch.setenv("I2I_CACHE_DIR", str(tmp_path / "cache"))
    real = models().get("big-lama")
    assert real.url == "https://github.com/Sanster/models/releases/download/add_big_lama/big-lama.pt"
    assert real.sha256 is None and "Apache-2.0" in real.license  # not known here: not invented
    assert real.md5 == "e3aa4aaa15225a33ec84f9f4bc47e500" and real.size_bytes == 205_669_692  # IOPaint's pin
    md5 = hashlib.md5(lama_file.read_bytes()).hexdigest()  # checked the way the real entry is: by MD5 and size
    spec = replace(real, name="big-lama-loopback", url=f"{loopback}/add_big_lama/big-lama.pt", md5=md5,
                   size_bytes=lama_file.stat().st_size)
    models().add(spec)
    try:
        g = i2i.load("big-lama-loopback", device="cpu")
        assert _Files.hits == ["/add_big_lama/big-lama.pt"] and cache_path(spec).read_bytes() == lama_file.read_bytes()
        assert g.meta.name == "spandrel_inpaint" and g.meta.kwargs["arch"] == "LaMa"
        assert g.meta.info["zoo"] == "big-lama-loopback" and "Apache-2.0" in g.meta.info["license"]
        assert [i["name"] for i in g.meta.extra_inputs] == ["mask"] and g.meta.tiling == "whole_image"
        i2i.load("big-lama-loopback", device="cpu")
        assert len(_Files.hits) == 1  # the second time from the cache
        bad = replace(spec, name="big-lama-bad", md5="0" * 32, url=f"{loopback}/x/big-lama.pt")
        models().add(bad)
        with pytest.raises(i2i.errors.I2IError, match="checksum: md5"):
            i2i.load("big-lama-bad", device="cpu")
        sha = hashlib.sha256(lama_file.read_bytes()).hexdigest()  # a sha256, where pinned, is what counts
        both = replace(spec, name="big-lama-sha", sha256=sha, md5="0" * 32, url=f"{loopback}/y/big-lama.pt")
        models().add(both)
        i2i.load("big-lama-sha", device="cpu")
    finally:
        plugins.reset()


def test_train_inpaint_from_the_big_lama_layout(lama_file: Path, tmp_path: Path) -> None:
    if not FACE.is_dir():
        pytest.skip("shared inpainting data not present")
    res = CliRunner().invoke(cli, ["train", "inpaint", "--data", str(FACE), "--set", f"init={lama_file}",
                                   "--set", "coarse_weight=0", "--set", "crop_size=64", "--set", "batch_size=1",
                                   "--set", "num_workers=0", "--set", "ndf=8", "--set", "d_layers=3", "--max-steps", "1",
                                   "--out-dir", str(tmp_path), "--name", "lama_ft"])
    assert res.exit_code == 0, res.output
    g = i2i.load(tmp_path / "lama_ft", device="cpu")  # no architecture flags
    assert g.meta.name == "spandrel_inpaint" and g.meta.kwargs["arch"] == "LaMa" and g.meta.method == "inpaint"


def test_eval_inpaint_and_eval_translate_take_a_zoo_models_local_weights(lama_file: Path, face_and_hole,
                                                                          tmp_path: Path) -> None:
    """The offline hint says --weights FILE: the eval commands that open zoo names have that option."""
    face_png, _, _, _ = face_and_hole
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.png").write_bytes(face_png.read_bytes())
    res = CliRunner().invoke(cli, ["eval", "inpaint", "-c", "big-lama", "--weights", str(lama_file), "--data", str(data),
                                   "--all", "--size", "32", "--baseline", "none", "--metrics", "l1,psnr,ssim,hole_l1",
                                   "--json"])
    assert res.exit_code == 0, res.output
    assert "spandrel_inpaint" in res.output
    res = CliRunner().invoke(cli, ["eval", "translate", "--help"])
    assert "--weights" in res.output
