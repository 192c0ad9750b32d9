"""Metric plugins (issue 18): the maths of FID/KID on fixed features against independent formulas,
PSNR/SSIM against today's Set5 figures, LPIPS's identities, the registry and the feature weights
(downloaded from a loopback server, offline messages, local files)."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import i2i.metrics as M
from i2i.cli import cli
from i2i.errors import I2IError, UnknownNameError

SET5 = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "sr" / "Set5"


class Identity(torch.nn.Module):
    """A 'feature network' that returns its input: the distribution metrics then see fixed features."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        self.num_features = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def features(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * scale + shift


def fid_formula(a: np.ndarray, b: np.ndarray) -> float:
    """Heusel et al. 2017 with scipy's sqrtm, as pytorch-fid computes it."""
    import scipy.linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def kid_formula(x: np.ndarray, y: np.ndarray) -> float:
    """Binkowski et al. 2018: unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written out with loops' sums."""
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1.0) ** 3  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    m, n = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


# -- the registry and the API ----------------------------------------------------------------------

def test_every_metric_declares_kind_and_direction() -> None:
    want = {"psnr": ("paired", True), "psnr_y": ("paired", True), "ssim": ("paired", True), "ssim_y": ("paired", True),
            "lpips": ("paired", False), "fid": ("distribution", False), "kid": ("distribution", False),
            "is": ("distribution", True), "masked_l1": ("masked", False)}
    for name, (kind, higher) in want.items():
        s = M.spec(name)
        assert (s.kind, s.higher_is_better, s.plugin) == (kind, higher, "i2i_metrics"), name
    assert set(want) <= set(M.names())


def test_unknown_names_options_and_missing_libraries_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UnknownNameError, match=r"unknown metric 'psnr-y' \(did you mean: psnr_y"):
        M.create("psnr-y")
    with pytest.raises(I2IError, match="metric 'psnr' takes no option 'crop'"):
        M.create("psnr", crop=4)
    import sys

    ours = ("i2i_metrics", "torchmetrics")
    before = {m for m in sys.modules if m.split(".")[0] in ours}
    for mod in before:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "torchmetrics", None)  # an install without the train extra's metrics
    with pytest.raises(I2IError, match=r"metric 'kid' needs torchmetrics \(pip install 'i2i\[train\]'\)"):
        M.create("kid", features=Identity(4))
    monkeypatch.undo()
    # the modules imported afresh meanwhile go too: left, they would be second copies beside the
    # restored ones (a second i2i_metrics.weights, whose state other tests would not see)
    for mod in [m for m in sys.modules if m.split(".")[0] in ours and m not in before]:
        del sys.modules[mod]
    res = CliRunner().invoke(cli, ["list", "metrics", "k*"])
    assert res.exit_code == 0 and "kid" in res.output and "distribution" in res.output and "lower" in res.output


class _MAE:
    """A third-party metric: mean absolute error on the 0..255 scale."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.v: list[float] = []

    def update(self, output, target=None, mask=None) -> None:
        self.v.append(float((output - target).abs().mean() * 255))

    def compute(self) -> float:
        return sum(self.v) / len(self.v)

    def reset(self) -> None:
        self.v = []


def test_a_third_party_metric_registers_and_clashes_like_any_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    import i2i
    from i2i.plugins import PluginHost

    def register_metrics(register) -> None:
        register("mae255", _MAE, kind="paired", higher_is_better=False)
        register("fid", _MAE, kind="distribution", higher_is_better=False)

    mod = types.ModuleType("fake_metrics")
    mod.register_metrics = i2i.hookimpl(register_metrics)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_metrics", mod)
    with pytest.warns(UserWarning, match="'fid' is registered twice and is off"):
        reg = PluginHost(builtins={"i2i_metrics": "i2i_metrics", "fake_metrics": "fake_metrics"},
                         entry_points=False).registry("metric")
    m = reg.create("mae255", device=torch.device("cpu"))
    m.update(torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4) / 255)
    assert m.compute() == pytest.approx(1.0)
    with pytest.raises(I2IError, match="metric name 'fid' is registered twice.*fake_metrics:fid, i2i_metrics:fid"):
        reg.get("fid")
    assert reg.get("i2i_metrics:fid").plugin == "i2i_metrics" and reg.get("psnr").kind == "paired"


# -- FID / KID / IS on fixed features --------------------------------------------------------------

def test_fid_of_a_set_against_itself_is_zero() -> None:
    a = features(64, 16, 0)
    m = M.create("fid", features=Identity(16))
    m.update(a, a)
    assert abs(m.compute()) < 1e-6


def test_fid_equals_the_sqrtm_formula_and_the_librarys_own_result() -> None:
    from torchmetrics.image.fid import FrechetInceptionDistance

    a, b = features(80, 12, 1), features(70, 12, 2, shift=0.3, scale=1.4)
    m = M.create("fid", features=Identity(12))
    m.update(a[:40], b[:30])  # fed in pieces, in both roles
    m.update(a[40:], None)
    m.update(None, b[30:])
    got = m.compute()
    assert got == pytest.approx(fid_formula(b.numpy(), a.numpy()), rel=1e-9, abs=1e-9)
    lib = FrechetInceptionDistance(feature=Identity(12))
    lib.update(a, real=False)
    lib.update(b, real=True)
    assert got == pytest.approx(float(lib.compute()), rel=1e-12)
    m.reset()
    with pytest.raises(I2IError, match="FID needs at least 2"):
        m.compute()


def test_kid_equals_the_unbiased_polynomial_mmd() -> None:
    a, b = features(40, 10, 3), features(40, 10, 4, shift=0.5)
    m = M.create("kid", features=Identity(10))  # smaller than subset_size: measured whole
    m.update(a, b)
    assert m.compute() == pytest.approx(kid_formula(a.numpy(), b.numpy()), rel=1e-9)


def test_kid_subsets_are_seeded() -> None:
    a, b = features(60, 8, 5), features(60, 8, 6, shift=0.2)
    values = []
    for seed in (0, 0, 1):
        m = M.create("kid", features=Identity(8), subsets=5, subset_size=20, seed=seed)
        m.update(a, b)
        values.append(m.compute())
    assert values[0] == values[1] != values[2]


def test_inception_score_of_uniform_and_confident_predictions() -> None:
    flat = M.create("is", features=Identity(10), splits=1)
    flat.update(torch.zeros(20, 10, dtype=torch.float64))  # p(y|x) uniform: IS = 1
    assert flat.compute() == pytest.approx(1.0)
    sharp = M.create("is", features=Identity(10), splits=1)
    sharp.update(torch.eye(10, dtype=torch.float64).repeat(2, 1) * 50)  # confident and diverse: IS = classes
    assert sharp.compute() == pytest.approx(10.0, rel=1e-6)


def test_the_inception_path_runs_on_a_weights_file(inception_file: Path, tmp_path: Path) -> None:
    x, y = torch.rand(3, 3, 40, 56), torch.rand(3, 3, 40, 56)
    m = M.create("fid", weights=str(inception_file), dims=64)  # the 64-d block: a short forward, a small sqrt
    m.update(x, x)
    assert abs(m.compute()) < 1e-6  # same images: same features
    k = M.create("kid", weights=str(inception_file))
    k.update(x, y)
    assert k.compute() != 0
    bad = tmp_path / "not_inception.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(I2IError, match="is not the FID Inception weights file"):
        M.create("kid", weights=str(bad))


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from i2i_metrics.distribution import random_inception_file

    return random_inception_file(tmp_path_factory.getbasetemp())  # one file for the whole run


# -- PSNR / SSIM: today's Set5 table ---------------------------------------------------------------

@pytest.mark.skipif(not SET5.is_dir(), reason="../shared/datasets/sr/Set5 not present")
def test_psnr_ssim_reproduce_the_set5_bicubic_row() -> None:
    from i2i.imageio import read_image
    from i2i_srgan.imresize import downscale, imresize, modcrop

    sr, hr = [], []
    for f in sorted(SET5.glob("*.png")):
        h = modcrop(read_image(f, 3), 4)
        hr.append(h)
        sr.append(imresize(downscale(h, 4), scale=4))
    values = {}
    for name in ("psnr_y", "ssim_y", "psnr", "ssim"):
        m = M.create(name, crop_border=4)
        for s, h in zip(sr, hr):  # sizes differ: one image per update
            m.update(M.images_to_tensor([s], dtype=torch.float64), M.images_to_tensor([h], dtype=torch.float64))
        values[name] = m.compute()
    # BENCHMARKS.md, Set5 x4, bicubic (MATLAB imresize): PSNR-Y 28.43, SSIM-Y 0.8111
    assert round(values["psnr_y"], 2) == 28.43
    assert round(values["ssim_y"], 4) == 0.8111
    assert values["psnr"] < values["psnr_y"] and values["ssim"] < values["ssim_y"]


def test_psnr_conventions() -> None:
    a = torch.zeros(2, 3, 16, 16, dtype=torch.float64)
    b = a.clone()
    b[1] += 1 / 255  # MSE 1 on the 0..255 scale
    m = M.create("psnr")
    m.update(a[1:], b[1:])
    assert m.compute() == pytest.approx(10 * np.log10(255.0**2))
    m.reset()
    m.update(a, b)
    assert m.compute() == float("inf")  # identical first pair: inf, as basicsr
    capped = M.create("psnr", max_db=100)
    capped.update(a, b)
    assert capped.compute() == pytest.approx((100 + 10 * np.log10(255.0**2)) / 2)
    y = M.create("psnr_y")  # white vs black: Y 235 vs 16
    y.update(torch.ones(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
    assert y.compute() == pytest.approx(10 * np.log10(255.0**2 / 219.0**2))
    with pytest.raises(I2IError, match="nothing left after cropping"):
        M.create("psnr", crop_border=8).update(a, b)


def test_ssim_is_one_for_equal_images_and_needs_11_pixels() -> None:
    x = torch.rand(2, 3, 24, 24)
    m = M.create("ssim")
    m.update(x, x)
    assert m.compute() == pytest.approx(1.0)


def test_ssim_equals_torchmetrics_on_the_valid_windows() -> None:
    from torchmetrics.functional.image import structural_similarity_index_measure

    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 40, 33, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.rand(2, 3, 40, 33, generator=g, dtype=torch.float64)).clamp(0, 1)
    m = M.create("ssim")
    m.update(x, y)
    _, full = structural_similarity_index_measure(x * 255, y * 255, data_range=255.0, reduction="none",
                                                  return_full_image=True)
    assert m.compute() == pytest.approx(float(full[..., 5:-5, 5:-5].mean()), abs=1e-12)
    with pytest.raises(I2IError, match="at least 11x11"):
        M.create("ssim_y", crop_border=4).update(x[..., :16, :16], x[..., :16, :16])


def test_masked_l1_counts_only_the_hole() -> None:
    out, target = torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)
    out[..., :4, :] = 0.5  # error in the top half
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :2, :] = 1  # hole: top quarter, all wrong
    m = M.create("masked_l1")
    m.update(out, target, mask)
    assert m.compute() == pytest.approx(0.5)
    whole = M.create("masked_l1", where="all")
    whole.update(out, target, mask)
    assert whole.compute() == pytest.approx(0.25)


# -- LPIPS -----------------------------------------------------------------------------------------

def test_lpips_is_zero_on_equal_images_and_symmetric() -> None:
    m = M.create("lpips", random_backbone=True)  # the real AlexNet cannot be downloaded here
    x, y = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(0)), torch.rand(2, 3, 48, 48)
    m.update(x, x)
    assert m.compute() == 0.0
    m.reset()
    m.update(x, y)
    xy = m.compute()
    m.reset()
    m.update(y, x)
    assert xy > 0 and m.compute() == pytest.approx(xy, rel=1e-6)


# -- feature weights: downloaded once, verified, offline messages ---------------------------------

@pytest.fixture(scope="module")
def alexnet_features(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """torchvision's AlexNet layout, conv layers only (what LPIPS reads), randomly initialised."""
    import io

    from torchvision.models import alexnet

    torch.manual_seed(0)
    state = {k: v for k, v in alexnet(weights=None).state_dict().items() if k.startswith("features.")}
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


@pytest.fixture()
def server(alexnet_features: bytes) -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []
    payloads = {"/tiny.bin": b"i2i" * 1000, "/alexnet.pth": alexnet_features}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = payloads.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()
    httpd.server_close()


def _source(monkeypatch: pytest.MonkeyPatch, name: str, **changes) -> None:
    from dataclasses import replace

    from i2i_metrics import weights

    monkeypatch.setitem(weights.SOURCES, name, replace(weights.SOURCES[name], **changes))


def test_feature_weights_are_fetched_once_with_their_sha256(server, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from i2i_metrics.weights import weights_path

    url, hits = server
    body = b"i2i" * 1000
    _source(monkeypatch, "inception", url=f"{url}/tiny.bin", filename="tiny.bin",
            sha256=hashlib.sha256(body).hexdigest(), size=len(body))
    monkeypatch.delenv("I2I_FID_WEIGHTS", raising=False)
    path = weights_path("inception")
    assert path.read_bytes() == body and path.parent.name == "metrics"
    assert "downloading tiny.bin" in capsys.readouterr().err
    assert weights_path("inception") == path and hits == ["/tiny.bin"]  # cached: no second request
    _source(monkeypatch, "inception", url=f"{url}/tiny.bin", filename="other.bin", sha256="0" * 64, size=len(body))
    with pytest.raises(I2IError, match="failed its checksum"):
        weights_path("inception")
    assert not (path.parent / "other.bin").exists()


def test_offline_the_error_names_the_url_the_flag_and_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The eval commands (inside flags_offered) name their flags; training and the Python API, which have
    no such flag, name only the environment variable."""
    from i2i_metrics.weights import SOURCES, flags_offered, weights_path

    monkeypatch.setenv("I2I_OFFLINE", "1")
    monkeypatch.delenv("I2I_FID_WEIGHTS", raising=False)
    with pytest.raises(I2IError) as err, flags_offered():
        M.create("fid")
    text = str(err.value)
    assert SOURCES["inception"].url in text and "--feature-weights FILE" in text and "I2I_FID_WEIGHTS=FILE" in text
    assert "\n" not in text
    with pytest.raises(I2IError, match="--lpips-weights FILE or set I2I_LPIPS_WEIGHTS=FILE"), flags_offered():
        M.create("lpips")
    with pytest.raises(I2IError) as err:  # training's validation, i2i.metrics.create: no flag to name
        M.create("fid")
    assert "set I2I_FID_WEIGHTS=FILE" in str(err.value) and "--feature-weights" not in str(err.value)
    monkeypatch.setenv("I2I_FID_WEIGHTS", "/nonexistent/inception.pth")
    with pytest.raises(I2IError, match=r"from \$I2I_FID_WEIGHTS\) is not a file"):
        weights_path("inception")


def test_lpips_backbone_comes_through_the_downloader(server, monkeypatch: pytest.MonkeyPatch,
                                                     alexnet_features: bytes, tmp_path: Path) -> None:
    url, hits = server
    prefix = hashlib.sha256(alexnet_features).hexdigest()[:8]
    _source(monkeypatch, "lpips_alex", url=f"{url}/alexnet.pth", filename=f"alexnet-{prefix}.pth", sha256_prefix=prefix)
    monkeypatch.delenv("I2I_LPIPS_WEIGHTS", raising=False)
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    fetched = M.create("lpips")
    fetched.update(x, y)
    assert hits == ["/alexnet.pth"]
    local = tmp_path / "alex.pth"
    local.write_bytes(alexnet_features)
    given = M.create("lpips", weights=str(local))  # a local file: same network, no request
    given.update(x, y)
    assert given.compute() == pytest.approx(fetched.compute()) and hits == ["/alexnet.pth"]
    random = M.create("lpips", random_backbone=True)
    random.update(x, y)
    assert random.compute() != pytest.approx(fetched.compute())  # the file's weights were loaded
    _source(monkeypatch, "lpips_alex", url=f"{url}/alexnet.pth", filename="alexnet-bad.pth", sha256_prefix="00000000")
    with pytest.raises(I2IError, match="does not start with 00000000"):
        M.create("lpips")


@pytest.mark.parametrize("name", ["psnr", "ssim", "masked_l1"])
def test_inputs_outside_0_1_or_not_float_are_one_line_errors(name: str) -> None:
    x = torch.rand(1, 3, 16, 16)
    mask = torch.ones(1, 1, 16, 16) if name == "masked_l1" else None
    with pytest.raises(I2IError, match=r"not \[0, 1\]: divide by 255"):
        M.create(name).update(x * 255, x * 255, mask)
    with pytest.raises(I2IError, match="not float in"):
        M.create(name).update((x * 255).to(torch.uint8), (x * 255).to(torch.uint8), mask)
    with pytest.raises(I2IError, match=r"\(x \+ 1\) / 2"):
        M.create(name).update(x * 2 - 1, x, mask)
    m = M.create(name)
    m.update((x + 5e-4).clamp(max=1.0005), x, mask)  # rounding just past 1 is tolerated
    assert m.compute() == m.compute()


def test_metric_wording_says_what_options_are_and_reads_a_bad_weights_file_in_one_sentence(tmp_path: Path) -> None:
    from i2i_metrics.weights import load_state

    for name in ("fid", "kid", "is", "lpips"):
        assert M.spec(name).description.endswith("weights=FILE: local " + ("AlexNet" if name == "lpips" else "Inception")
                                                  + " weights (else fetched once)")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x80\x02" + bytes(range(128, 256)))  # binary, but no pickle torch reads
    with pytest.raises(I2IError) as err:
        load_state(bad, "Inception")
    text = str(err.value)
    assert "is not an Inception weights file: PyTorch cannot read it" in text and "Error" not in text
    for content, says in ((b"", "it is empty"), (b"<html><body>404</body></html>", "it is an HTML page")):
        bad.write_bytes(content)
        with pytest.raises(I2IError, match=f"is not an Inception weights file: {says}.*download it again"):
            load_state(bad, "Inception")
