"""`i2i cache`: what the cache holds, and clearing it kind by kind (downloads only when confirmed)."""

from __future__ import annotations

from click.testing import CliRunner

from i2i.cli import cli
from i2i.download import cache_dir


def _fill() -> None:
    (cache_dir("tensorrt")).mkdir(parents=True)
    (cache_dir("tensorrt") / "model.engine").write_bytes(b"\0" * 3_000_000)
    (cache_dir("models") / "example.org").mkdir(parents=True)
    (cache_dir("models") / "example.org" / "w.pth").write_bytes(b"weights")


def test_show_lists_every_kind_with_its_size() -> None:
    _fill()
    result = CliRunner().invoke(cli, ["cache"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:3] for line in result.output.splitlines()[3:]}
    assert rows["tensorrt"] == ["1", "3.0"] and rows["models"] == ["1", "7"] and rows["datasets"] == ["0", "0"]
    assert str(cache_dir("").resolve()) in result.output.splitlines()[0]


def test_clear_one_kind_leaves_the_others() -> None:
    _fill()
    result = CliRunner().invoke(cli, ["cache", "clear", "tensorrt"])
    assert result.exit_code == 0, result.output
    assert not cache_dir("tensorrt").exists() and (cache_dir("models") / "example.org" / "w.pth").exists()


def test_downloads_are_cleared_only_when_confirmed() -> None:
    _fill()
    runner = CliRunner()
    result = runner.invoke(cli, ["cache", "clear", "models"], input="n\n")
    assert result.exit_code != 0 and cache_dir("models").exists()
    result = runner.invoke(cli, ["cache", "clear", "all", "--yes"])
    assert result.exit_code == 0, result.output
    assert not cache_dir("models").exists() and not cache_dir("tensorrt").exists()


def test_bad_requests_get_one_line_errors() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["cache", "clear"])
    assert result.exit_code != 0 and "name what to clear" in result.output and "Traceback" not in result.output
    result = runner.invoke(cli, ["cache", "clear", "tensorrts"])
    assert result.exit_code != 0 and "did you mean: tensorrt?" in result.output


def test_no_home_directory_is_a_one_line_error(no_home) -> None:
    no_home()
    result = CliRunner().invoke(cli, ["cache"])
    assert result.exit_code != 0 and "set I2I_CACHE_DIR" in result.output and result.exception.__class__ is SystemExit


def test_help_names_every_kind() -> None:
    from i2i.cli import CACHE_KINDS

    result = CliRunner().invoke(cli, ["cache", "--help"])
    assert result.exit_code == 0
    assert all(kind in result.output for kind in CACHE_KINDS), result.output
