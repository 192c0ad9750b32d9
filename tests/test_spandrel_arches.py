"""Every row of docs/spandrel.md, checked again: each spandrel architecture built small from spandrel's
own classes with random weights loads through i2i.load, tiles (or is refused tiles) as documented, and
exports to ONNX with onnxruntime matching PyTorch, or fails as documented."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("spandrel")

from i2i_spandrel.arches import catalogue  # noqa: E402
from i2i_spandrel.table import COLUMNS, SKIPPED, TINY, check_row  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

DOC = Path(__file__).resolve().parents[1] / "docs" / "spandrel.md"


def documented() -> dict[str, dict[str, str]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == len(COLUMNS) and cells[0] not in ("architecture",) and not set(cells[0]) <= {"-"}:
            rows[cells[0].split()[0]] = dict(zip(COLUMNS, cells))
    return rows


ROWS = documented()


def test_the_table_covers_every_architecture_spandrel_has_here() -> None:
    # spandrel-extra-arches (installed in dev) adds its rows; the table lists no architecture spandrel lacks
    assert set(catalogue()) <= set(ROWS), sorted(set(catalogue()) - set(ROWS))
    assert set(TINY) | set(SKIPPED) >= set(catalogue())
    licences = {a: ROWS[a]["package / licence"] for a in catalogue()}
    assert all(("non-commercial" in v or "Academic" in v or "NC" in v or "S-Lab" in v) for a, v in licences.items()
               if catalogue()[a].package != "spandrel"), licences


@pytest.mark.parametrize("arch", sorted(catalogue()))
def test_documented_row_holds(arch: str, tmp_path: Path) -> None:
    row = ROWS[arch]
    if arch in SKIPPED:
        assert row["loads"] == f"not built here: {SKIPPED[arch]}"
        pytest.skip(SKIPPED[arch])
    # LaMa's export (51M parameters, 200 MB) is checked at two sizes in tests/test_lama_onnx.py
    got = check_row(arch, tmp_path, onnx=arch != "LaMa")
    for column in ("architecture", "package / licence", "task", "scale", "loads", "tiles"):
        assert got[column] == row[column], (column, got[column], row[column])
    if arch == "LaMa":
        return
    assert got["ONNX exports"] == row["ONNX exports"]
    if got["ONNX exports"] == "yes":
        assert float(got["parity"]) <= 1e-4
