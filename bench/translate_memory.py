"""Peak memory of ``i2i translate --tile 256`` on an x4 model: does tiling bound it?

Target (issue "One inference path"): peak RSS within 1.5x of the 8-bit output size plus the model
(the process's RSS once the model is loaded: interpreter, torch, weights).

Each size runs in a fresh process (``--child``), which opens the model with ``i2i.load``, records
its RSS (the baseline), then translates one photo through ``i2i.translate.translate_files`` (what
``i2i translate`` runs: decode, tiles written into the 8-bit output, PNG written) and reports its
peak RSS (``ru_maxrss``). Inputs are a real photo from ../shared/datasets/horses resized to each size.

    python bench/translate_memory.py                      # 1000x750, 2000x1500, 4000x3000
    python bench/translate_memory.py --sizes 1000x750 --tile 0   # the untiled run, for comparison
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
WEIGHTS = SHARED / "weights" / "realesrgan" / "realesr-animevideov3.pth"
PHOTO = SHARED / "datasets" / "horses" / "n02381460_1019.jpg"


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def child(size: str, tile: int, workdir: Path) -> dict:
    import numpy as np
    from PIL import Image

    from i2i.loader import load
    from i2i.translate import translate_files

    w, h = (int(v) for v in size.split("x"))
    src = workdir / f"in_{size}.png"
    with Image.open(PHOTO) as im:
        im.convert("RGB").resize((w, h), Image.BICUBIC).save(src, compress_level=1)
    g = load("realesr-animevideov3", weights=WEIGHTS, device="cpu")
    g.translate(np.zeros((64, 64, 3), np.uint8))  # first call: allocator and thread pools warmed
    baseline = rss_bytes()
    t0 = time.perf_counter()
    written, failed = translate_files(g, [src], workdir / "out", tile=tile, max_pixels=None, note=lambda m: None)
    seconds = time.perf_counter() - t0
    assert written and not failed, failed
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out_bytes = h * 4 * w * 4 * 3
    return {"size": size, "tile": tile, "baseline_mb": baseline / 2**20, "peak_mb": peak / 2**20,
            "output_mb": out_bytes / 2**20, "ratio": peak / (out_bytes + baseline),
            "over_baseline_per_output": (peak - baseline) / out_bytes, "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["1000x750", "2000x1500", "4000x3000"])
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(child(args.child, args.tile, Path(tmp))))
        return
    if not WEIGHTS.is_file() or not PHOTO.is_file():
        raise SystemExit(f"needs {WEIGHTS} and {PHOTO}")
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    print(f"{'input':>10} {'tile':>5} {'output MB':>10} {'model MB':>9} {'peak MB':>8} "
          f"{'peak/(out+model)':>17} {'(peak-model)/out':>17} {'s':>6}")
    for size in args.sizes:
        res = subprocess.run([sys.executable, __file__, "--child", size, "--tile", str(args.tile)],
                             capture_output=True, text=True, env=env, check=False)
        if res.returncode != 0:
            print(f"{size}: failed\n{res.stderr[-2000:]}")
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"{r['size']:>10} {r['tile']:>5} {r['output_mb']:>10.0f} {r['baseline_mb']:>9.0f} {r['peak_mb']:>8.0f} "
              f"{r['ratio']:>17.2f} {r['over_baseline_per_output']:>17.2f} {r['seconds']:>6.1f}")


if __name__ == "__main__":
    main()
