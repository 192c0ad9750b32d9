"""The quick CPU recipe (configs/pix2pix_facades_quick.yaml): does it train a visibly better model?

Trains the recipe as README says (``i2i train pix2pix --data facades --config pix2pix_facades_quick``)
and times it, then scores it against the same recipe after one step (an untrained model) on the
facades test split: each test file's label half (the recipe is BtoA: the right half) resized to the
training crop (128x128, as the reference tests at load_size = crop_size), translated with
``i2i.load``, and compared with the photo half at that size. Prints mean L1 (0-255 levels) and PSNR.

    python bench/quick_recipe.py                       # train (~12 min on 2 cores) and score
    python bench/quick_recipe.py --skip-train RUN      # score an existing run folder
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
FACADES = SHARED / "datasets" / "facades"


def train(out: Path, name: str, extra: list[str]) -> tuple[Path, float]:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "I2I_DATA_DIR": str(FACADES.parent)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "i2i.cli", "train", "pix2pix", "--data", "facades", "--config",
                    "pix2pix_facades_quick", "--out-dir", str(out), "--name", name, *extra], env=env, check=True)
    return out / name, time.perf_counter() - t0


def score(run: Path, size: int = 128) -> tuple[float, float]:
    """Mean L1 (levels) and PSNR (dB) of the run's translations of the test split at size x size."""
    from PIL import Image

    import i2i
    from i2i.imageio import decode_image

    g = i2i.load(run, device="cpu")
    l1s, psnrs = [], []
    for path in sorted((FACADES / "test").iterdir()):
        pair = decode_image(path)
        half = pair.shape[1] // 2
        label, photo = pair[:, half:], pair[:, :half]  # BtoA: B (labels) right, A (photos) left
        small = lambda a: np.asarray(Image.fromarray(a).resize((size, size), Image.BICUBIC)).astype(np.float64)  # noqa: E731
        out = g(np.asarray(small(label), np.uint8), whole=True).astype(np.float64)
        target = small(photo)
        l1s.append(np.abs(out - target).mean())
        psnrs.append(10 * np.log10(255.0**2 / max(((out - target) ** 2).mean(), 1e-12)))
    return float(np.mean(l1s)), float(np.mean(psnrs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/i2i_quick_recipe")
    ap.add_argument("--skip-train", metavar="RUN", help="score this run folder instead of training")
    args = ap.parse_args()
    out = Path(args.out)
    if args.skip_train:
        run, seconds = Path(args.skip_train), float("nan")
    else:
        run, seconds = train(out, "quick", [])
    untrained, _ = train(out, "one_step", ["--max-steps", "1"])
    l1, psnr = score(run)
    l1_0, psnr_0 = score(untrained)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"{'model':<28} {'train s':>8} {'L1 (levels)':>12} {'PSNR dB':>8}")
    print(f"{'after 1 step (untrained)':<28} {'':>8} {l1_0:>12.2f} {psnr_0:>8.2f}")
    print(f"{'quick recipe':<28} {seconds:>8.0f} {l1:>12.2f} {psnr:>8.2f}")


if __name__ == "__main__":
    main()
