"""Inpainting speed, side by side in one run: DeepFill v2 in PyTorch eager vs onnxruntime vs
OpenCV's Telea, on the same held-aside CelebA-HQ face and the same seeded masks.

    NO_ALBUMENTATIONS_UPDATE=1 python bench/inpaint_speed.py [--size 256] [--cnum 48] [--repeats 5]

Untrained weights (speed does not depend on them). Prints ms per image and the ratios.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
FACE = SHARED / "datasets" / "inpaint" / "celeba_hq" / "src" / "male" / "005735.jpg"


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--cnum", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads for torch and onnxruntime (0: default)")
    args = ap.parse_args()

    import onnxruntime as ort
    import torch
    from PIL import Image

    from i2i.imageio import read_image
    from i2i.imageproc import translate_array
    from i2i.registry import create_generator, generators
    from i2i.testing import generator_meta
    from i2i_export.exporter import export_onnx
    from i2i_inpaint.evaluate import bucketed_masks, opencv_inpainter
    from i2i_inpaint.masks import mask_from_spec

    if args.threads:
        torch.set_num_threads(args.threads)
    s = args.size
    image = np.asarray(Image.fromarray(read_image(FACE)).resize((s, s), Image.Resampling.BICUBIC))
    mask = bucketed_masks(mask_from_spec("free_form_eval"), (s, s), 1, seed=0)[2][0]  # a 20-30% hole
    torch.manual_seed(0)
    G = create_generator("deepfill_v2", cnum=args.cnum).eval()
    meta = generator_meta(generators().get("deepfill_v2"))
    meta.kwargs = {"cnum": args.cnum}

    @torch.inference_mode()
    def torch_fn(x: np.ndarray, m: np.ndarray) -> np.ndarray:
        return G(torch.from_numpy(x), torch.from_numpy(m)).numpy()

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(G, meta, Path(tmp) / "deepfill.onnx")
        opts = ort.SessionOptions()
        if args.threads:
            opts.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

        def ort_fn(x: np.ndarray, m: np.ndarray) -> np.ndarray:
            return sess.run(["output"], {"image": x, "mask": m})[0]

        telea = opencv_inpainter("telea")
        a = translate_array(torch_fn, image, meta, mask=mask)
        b = translate_array(ort_fn, image, meta, mask=mask)
        t_torch = timed(lambda: translate_array(torch_fn, image, meta, mask=mask), args.repeats)
        t_ort = timed(lambda: translate_array(ort_fn, image, meta, mask=mask), args.repeats)
        t_telea = timed(lambda: telea(image, mask), args.repeats)

    params = sum(p.numel() for p in G.parameters()) / 1e6
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, torch {torch.__version__}, onnxruntime {ort.__version__}, "
          f"threads {torch.get_num_threads()}")
    print(f"deepfill_v2 cnum {args.cnum} ({params:.2f}M params), {s}x{s}, hole {mask.mean():.0%}, median of {args.repeats}")
    print(f"max |torch - onnxruntime| on the uint8 result: {int(np.abs(a.astype(int) - b).max())}")
    print("| path | ms / image | vs torch |")
    print("|---|--:|--:|")
    for name, t in (("PyTorch eager", t_torch), ("onnxruntime", t_ort), ("OpenCV Telea", t_telea)):
        print(f"| {name} | {t:.1f} | {t_torch / t:.2f}x |")


if __name__ == "__main__":
    main()
