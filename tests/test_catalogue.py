"""The dataset catalogue: --data NAME|PATH, I2I_DATA_DIR, the cache, downloads, `i2i list datasets`."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import pytest
from click.testing import CliRunner

import i2i
from i2i import plugins
from i2i.cli import cli
from i2i.data import catalogue_status, resolve_data
from i2i.errors import I2IError
from i2i.imageio import write_image
from i2i.registry import registry

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
needs_facades = pytest.mark.skipif(not (SHARED / "facades").is_dir(), reason="../shared/datasets/facades not present")
needs_facades_and_monet = pytest.mark.skipif(not ((SHARED / "facades").is_dir() and (SHARED / "monet2photo").is_dir()),
                                             reason="../shared/datasets/facades or monet2photo not present")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A private cache, no I2I_DATA_DIR, and a fresh plugin host before and after each test."""
    monkeypatch.setenv("I2I_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("I2I_DATA_DIR", raising=False)
    monkeypatch.delenv("I2I_OFFLINE", raising=False)
    plugins.reset()
    yield
    plugins.reset()


class FakeCatalogue:
    """A third-party-style plugin adding one dataset (registered on the plugin manager)."""

    def __init__(self, url: str, sha256: str | None = None, layout: str = "aligned") -> None:
        self.url, self.sha256, self.layout = url, sha256, layout

    @i2i.hookimpl
    def register_datasets(self, register) -> None:
        register("tinyset", url=self.url, layout=self.layout, sha256=self.sha256, description="test data")


def _add_fake(url: str, **kw: object) -> None:
    plugins.manager().pm.register(FakeCatalogue(url, **kw), name="fake_catalogue")


def _tiny_archive(folder: Path) -> tuple[Path, str]:
    """tinyset.tar.gz holding tinyset/train/{0,1}.png (A|B side by side); returns it and its sha256."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for i in range(2):
            png = folder / f"{i}.png"
            write_image(png, np.full((8, 16, 3), 40 * i, np.uint8))
            tf.add(png, arcname=f"tinyset/train/{i}.png")
    archive = folder / "tinyset.tar.gz"
    archive.write_bytes(buf.getvalue())
    return archive, hashlib.sha256(buf.getvalue()).hexdigest()


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server over a fresh folder: (base URL, folder)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


# -- paths -----------------------------------------------------------------------------------------

@needs_facades
def test_existing_folder_path_is_used_as_is() -> None:
    assert resolve_data(str(SHARED / "facades")) == (SHARED / "facades").resolve()


def test_folder_path_is_used_as_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(I2IError, match="data folder .*nowhere does not exist"):
        resolve_data(str(tmp_path / "nowhere"))
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(I2IError, match="expects a folder"):
        resolve_data(str(tmp_path / "f.txt"))
    with pytest.raises(I2IError, match="no data given"):
        resolve_data("")
    # a bare name that is an existing folder in the working directory wins over the catalogue
    (tmp_path / "facades").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_data("facades") == tmp_path / "facades"


# -- the catalogue ---------------------------------------------------------------------------------

def test_builtin_catalogue() -> None:
    reg = registry("dataset")
    for name in ["facades", "cityscapes", "maps", "edges2shoes", "edges2handbags", "night2day"]:
        spec = reg.get(name)
        assert spec.layout == "aligned" and spec.plugin == "i2i_datasets"
        assert spec.url == f"http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"
    for name in ["horse2zebra", "monet2photo", "apple2orange", "summer2winter_yosemite", "mini"]:
        spec = reg.get(name)
        assert spec.layout == "unaligned"
        assert spec.url == f"http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name}.zip"
    clash = reg.get("cyclegan_facades")  # the unpaired version of a pix2pix name
    assert clash.url.endswith("/cyclegan/datasets/facades.zip") and clash.subdir == "facades"
    assert {s.layout for s in reg} <= {"aligned", "unaligned", "folder"}


@needs_facades_and_monet
def test_i2i_data_dir_lookup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert catalogue_status("facades") == "-"
    monkeypatch.setenv("I2I_DATA_DIR", os.pathsep.join([str(tmp_path / "empty"), str(SHARED)]))
    assert resolve_data("facades") == SHARED / "facades"
    assert resolve_data("monet2photo", layout_hint="unaligned") == SHARED / "monet2photo"
    assert catalogue_status(registry("dataset").get("facades")) == "I2I_DATA_DIR"
    from i2i.data import UnalignedDataset

    ds = UnalignedDataset(resolve_data("monet2photo"), load_size=32, crop_size=32, max_items=4)
    assert ds[0]["A"].shape == (3, 32, 32)


def test_unknown_name_and_layout_mismatch() -> None:
    with pytest.raises(I2IError, match=r"unknown dataset 'facade' \(did you mean: facades.*\); see `i2i list datasets`"):
        resolve_data("facade")
    with pytest.raises(I2IError, match="'horse2zebra' is unaligned, but this method needs aligned data"):
        resolve_data("horse2zebra", layout_hint="aligned")


def test_download_into_cache(file_server: tuple[str, Path], tmp_path: Path) -> None:
    url, www = file_server
    archive, sha = _tiny_archive(www)
    _add_fake(f"{url}/{archive.name}", sha256=sha)
    assert catalogue_status("tinyset") == "-"
    root = resolve_data("tinyset", layout_hint="aligned")
    cache = tmp_path / "cache" / "datasets"
    assert root == cache / "tinyset"
    assert sorted(p.name for p in (root / "train").iterdir()) == ["0.png", "1.png"]
    assert os.listdir(cache) == ["tinyset"]  # archive and temporary folders are gone
    assert catalogue_status("tinyset") == "cached"
    archive.unlink()  # now served from the cache, without the network
    assert resolve_data("tinyset") == root
    from i2i.data import AlignedDataset

    assert len(AlignedDataset(root, load_size=8, crop_size=8)) == 2


def test_download_checksum_mismatch_leaves_no_trace(file_server: tuple[str, Path], tmp_path: Path) -> None:
    url, www = file_server
    archive, _ = _tiny_archive(www)
    _add_fake(f"{url}/{archive.name}", sha256="0" * 64)
    with pytest.raises(I2IError, match="failed its checksum"):
        resolve_data("tinyset")
    assert catalogue_status("tinyset") == "-"
    assert not any((tmp_path / "cache" / "datasets").iterdir())


def test_offline_error_says_how_to_supply_a_copy() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/tinyset.tar.gz"
    _add_fake(url)
    with pytest.raises(I2IError) as info:
        resolve_data("tinyset")
    msg = str(info.value)
    assert url in msg
    assert "download it yourself and pass --data /path/to/tinyset or set I2I_DATA_DIR" in msg


# -- the command line ------------------------------------------------------------------------------

@needs_facades
def test_cli_list_datasets() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["list", "datasets"], env={"I2I_DATA_DIR": str(SHARED)})
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split() for line in result.output.splitlines()[2:]}
    assert lines["facades"][1:4] == ["aligned", "I2I_DATA_DIR", "i2i_datasets"]
    assert lines["horse2zebra"][1:3] == ["unaligned", "-"]
    result = runner.invoke(cli, ["list", "datasets", "edges2*", "--json"])
    assert result.exit_code == 0, result.output
    assert '"name": "edges2handbags"' in result.output and '"name": "facades"' not in result.output
