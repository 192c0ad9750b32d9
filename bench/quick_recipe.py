"""The quick CPU recipe (configs/pix2pix_facades_quick.yaml): does it train a visibly better model?

Trains the recipe as README says (``i2i train pix2pix --data facades --config pix2pix_facades_quick``)
and times it, then scores it against the same recipe after one step (an untrained model) on the
facades test split: each test file's label half (the recipe is BtoA: the right half) resized to the
training crop (128x128, as the reference tests at load_size = crop_size), translated with
``i2i.load``, and compared with the photo half at that size. Prints mean L1 (0-255 levels), PSNR and
SSIM (i2i's ``ssim`` metric, Wang et al. 2004, on RGB).

Two references without a network put the figures in scale: the dataset's median photo colour
everywhere (what an L1-trained model that ignores its input converges to), and a label-colour oracle
that paints each label class with the median photo colour of that class in the training split. A
facade's colours are not in its label map, so L1 to the photo has little room below the untrained
model: the oracle, which knows every pixel's class, is only ~8% lower.

    python bench/quick_recipe.py                       # train (~13 min on 2 cores) and score
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


def test_pairs(size: int = 128) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The test split's (label, photo) halves at size x size (BtoA: labels on the right)."""
    from i2i.imageio import decode_image

    labels, photos = [], []
    for path in sorted((FACADES / "test").iterdir()):
        pair = decode_image(path)
        half = pair.shape[1] // 2
        labels.append(_resize(pair[:, half:], size))
        photos.append(_resize(pair[:, :half], size))
    return labels, photos


def _resize(a: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(a).resize((size, size), Image.BICUBIC))


def score(outputs: list[np.ndarray], photos: list[np.ndarray]) -> tuple[float, float, float]:
    """Mean L1 (levels), PSNR (dB) and SSIM of ``outputs`` against ``photos`` (uint8 HxWx3 each)."""
    import i2i.metrics

    l1s, psnrs = [], []
    for out, target in zip(outputs, photos):
        d = out.astype(np.float64) - target
        l1s.append(np.abs(d).mean())
        psnrs.append(10 * np.log10(255.0**2 / max((d**2).mean(), 1e-12)))
    ssim = i2i.metrics.create("ssim")
    ssim.update(i2i.metrics.images_to_tensor(outputs), i2i.metrics.images_to_tensor(photos))
    return float(np.mean(l1s)), float(np.mean(psnrs)), ssim.compute()


def translate(run: Path, labels: list[np.ndarray]) -> list[np.ndarray]:
    import i2i

    g = i2i.load(run, device="cpu")
    return [g(label, whole=True) for label in labels]


def references(labels: list[np.ndarray], size: int = 128) -> dict[str, list[np.ndarray]]:
    """The median-colour and label-colour-oracle images for ``labels`` (module docstring)."""
    from i2i.imageio import decode_image

    by_class: dict[int, list[np.ndarray]] = {}
    everything = []
    key = lambda lab: (lab.reshape(-1, 3) // 32 * np.array([64, 8, 1])).sum(1)  # noqa: E731  label colour -> class
    for path in sorted((FACADES / "train").iterdir()):
        pair = decode_image(path)
        half = pair.shape[1] // 2
        label, photo = _resize(pair[:, half:], size), _resize(pair[:, :half], size).reshape(-1, 3)
        keys = key(label)
        everything.append(photo[::7])
        for k in np.unique(keys):
            by_class.setdefault(int(k), []).append(photo[keys == k][::7])
    median = np.median(np.concatenate(everything), 0)
    colour = {k: np.median(np.concatenate(v), 0) for k, v in by_class.items()}
    oracle = [np.stack([colour.get(int(k), median) for k in key(lab)]).reshape(lab.shape).round().astype(np.uint8)
              for lab in labels]
    flat = [np.broadcast_to(median.round().astype(np.uint8), lab.shape).copy() for lab in labels]
    return {"median photo colour": flat, "label-colour oracle": oracle}


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
    untrained = out / "one_step"
    if not (untrained / "checkpoints" / "final").is_dir():
        train(out, "one_step", ["--max-steps", "1"])
    labels, photos = test_pairs()
    rows = [("after 1 step (untrained)", "", score(translate(untrained, labels), photos)),
            ("quick recipe", f"{seconds:.0f}", score(translate(run, labels), photos))]
    rows += [(name, "", score(images, photos)) for name, images in references(labels).items()]
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"{'model':<28} {'train s':>8} {'L1 (levels)':>12} {'PSNR dB':>8} {'SSIM':>7}")
    for name, secs, (l1, psnr, ssim) in rows:
        print(f"{name:<28} {secs:>8} {l1:>12.2f} {psnr:>8.2f} {ssim:>7.4f}")


if __name__ == "__main__":
    main()
