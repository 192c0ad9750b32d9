"""i2i.download against a loopback HTTP server: verified, atomic downloads and safe extraction."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from i2i.download import cache_dir, download, extract, sha256_file
from i2i.errors import I2IError

PAYLOAD = bytes(range(256)) * 40  # 10 KiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/good.bin":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path == "/short.bin":  # promises the full payload, sends half, hangs up
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            self.close_connection = True
        else:
            self.send_error(404)

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_good_download_verifies_and_reuses(server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "sub" / "good.bin"
    assert download(f"{server}/good.bin", dest, sha256=SHA, size=len(PAYLOAD)) == dest
    assert dest.read_bytes() == PAYLOAD and sha256_file(dest) == SHA
    assert _leftovers(dest.parent) == ["good.bin"]  # no .part file left behind
    assert "downloading good.bin" in capsys.readouterr().err  # plain progress line off a TTY
    # a verified existing file is reused without the network
    assert download("http://127.0.0.1:9/unreachable", dest, sha256=SHA) == dest


def test_sha256_mismatch_deletes_partial(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "good.bin"
    with pytest.raises(I2IError, match=r"failed its checksum: sha256 [0-9a-f]{64}, expected 0{64}"):
        download(f"{server}/good.bin", dest, sha256="0" * 64)
    assert _leftovers(tmp_path) == []


def test_size_mismatch(server: str, tmp_path: Path) -> None:
    with pytest.raises(I2IError, match=f"has {len(PAYLOAD)} bytes, expected 5"):
        download(f"{server}/good.bin", tmp_path / "g.bin", size=5)
    assert _leftovers(tmp_path) == []


def test_truncated_download(server: str, tmp_path: Path) -> None:
    with pytest.raises(I2IError, match="cut short") as info:
        download(f"{server}/short.bin", tmp_path / "s.bin", offline_hint="copy it by hand")
    assert f"{server}/short.bin" in str(info.value) and "copy it by hand" in str(info.value)
    assert _leftovers(tmp_path) == []


def test_http_404(server: str, tmp_path: Path) -> None:
    with pytest.raises(I2IError, match=r"cannot download .*/missing\.bin: HTTP 404"):
        download(f"{server}/missing.bin", tmp_path / "m.bin")


def test_unreachable_url_names_url_and_hint(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/data.tar.gz"
    with pytest.raises(I2IError) as info:
        download(url, tmp_path / "d.tar.gz", offline_hint="download it yourself and pass --data PATH")
    msg = str(info.value)
    assert msg.startswith(f"cannot download {url}: ") and msg.endswith("download it yourself and pass --data PATH")
    assert _leftovers(tmp_path) == []


def test_offline_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("I2I_OFFLINE", "1")
    with pytest.raises(I2IError, match="I2I_OFFLINE is set; put it there yourself"):
        download("http://example.invalid/x", tmp_path / "x", offline_hint="put it there yourself")


def test_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_home) -> None:
    monkeypatch.setenv("I2I_CACHE_DIR", str(tmp_path))
    assert cache_dir("datasets") == tmp_path / "datasets"
    monkeypatch.delenv("I2I_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("models") == tmp_path / "xdg" / "i2i" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir("models") == Path.home() / ".cache" / "i2i" / "models"
    # HOME unset and no passwd entry (a bare container): say what to set, not a RuntimeError
    no_home()
    with pytest.raises(I2IError, match="set I2I_CACHE_DIR"):
        cache_dir("models")


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_extract_tar_gz_and_zip(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "a.tar.gz", {"ds/train/1.txt": b"one", "ds/test/2.txt": b"two"})
    out = extract(archive, tmp_path / "out")
    assert (out / "ds" / "train" / "1.txt").read_bytes() == b"one"
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as zf:
        zf.writestr("ds/trainA/x.txt", "x")
    out = extract(tmp_path / "b.zip", tmp_path / "zout")
    assert (out / "ds" / "trainA" / "x.txt").read_text() == "x"
    with pytest.raises(I2IError, match="already exists"):
        extract(tmp_path / "b.zip", tmp_path / "zout")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".extract")]


@pytest.mark.parametrize("evil", ["../evil.txt", "/tmp/evil.txt", "ok/../../evil.txt"])
def test_extract_refuses_path_traversal(tmp_path: Path, evil: str) -> None:
    archive = _tar(tmp_path / "evil.tar.gz", {"fine.txt": b"fine", evil: b"gotcha"})
    with pytest.raises(I2IError, match="unsafe path"):
        extract(archive, tmp_path / "out" / "x")
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.writestr(evil, "gotcha")
    with pytest.raises(I2IError, match="unsafe path"):
        extract(tmp_path / "evil.zip", tmp_path / "out" / "y")
    assert not (tmp_path / "evil.txt").exists() and _leftovers(tmp_path / "out") == []


def test_extract_refuses_link_out_of_tree(tmp_path: Path) -> None:
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("ds/link")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(I2IError, match="unsafe"):
        extract(archive, tmp_path / "out")


def test_extract_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "x.zip").write_text("html error page")
    with pytest.raises(I2IError, match="not a .zip or .tar"):
        extract(tmp_path / "x.zip", tmp_path / "out")


def test_a_copy_that_does_not_match_is_named_when_the_download_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("I2I_OFFLINE", "1")
    dest = tmp_path / "x.pth"
    dest.write_bytes(b"another file")
    with pytest.raises(I2IError, match=r"does not match the published size/sha256, so it is not used\); put it there"):
        download("http://example.invalid/x.pth", dest, sha256="0" * 64, offline_hint="put it there yourself")
    assert dest.read_bytes() == b"another file"  # left for the user to look at
