"""Time the conformance suite per registered entry (CPU seconds and wall seconds).

    NO_ALBUMENTATIONS_UPDATE=1 python bench/conformance_speed.py [--threads N] [--exporter dynamo]

The suite must stay fast because tests/test_conformance.py runs it over everything registered:
a slow row means that entry's test_kwargs / test_size should be made smaller.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import torch

from i2i import testing as T


def timed(fn, *args):  # type: ignore[no-untyped-def]
    cpu, wall = time.process_time(), time.perf_counter()
    fn(*args)
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--exporter", default="auto", choices=["auto", "torchscript", "dynamo"],
                        help="torch.onnx exporter for check_generator_onnx (run twice to compare)")
    parser.add_argument("--generators", default="*", help="wildcard of the generators to time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in T.generator_names(args.generators):
            rows.append(("generator", name, "check_generator", *timed(T.check_generator, name)))
            rows.append(("generator", name, "check_generator_onnx",
                         *timed(T.check_generator_onnx, name, tmp, args.exporter)))
        for name in T.discriminator_names():
            rows.append(("discriminator", name, "check_discriminator", *timed(T.check_discriminator, name)))
        for name in T.loss_names():
            rows.append(("loss", name, "check_loss", *timed(T.check_loss, name)))
    print(f"torch {torch.__version__}, {args.threads} thread(s), exporter {args.exporter}")
    print(f"{'kind':14s} {'name':20s} {'check':22s} {'cpu s':>7s} {'wall s':>7s}")
    for kind, name, check, cpu, wall in rows:
        print(f"{kind:14s} {name:20s} {check:22s} {cpu:7.2f} {wall:7.2f}")
    print(f"{'total':58s} {sum(r[3] for r in rows):7.2f} {sum(r[4] for r in rows):7.2f}")


if __name__ == "__main__":
    main()
