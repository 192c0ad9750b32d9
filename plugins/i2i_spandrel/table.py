"""What each spandrel architecture can do in i2i (docs/spandrel.md is generated from this).

:data:`TINY` gives every architecture small hyperparameters of spandrel's own classes, so that
``tests/test_spandrel_arches.py`` builds each one with random weights in seconds and checks the
columns of the table: it loads (spandrel detects the state_dict and i2i rebuilds it from the recorded
hyperparameters), it runs at a small size, whether tiles are allowed, and whether it exports to ONNX
and matches PyTorch in onnxruntime. :data:`NO_ONNX` says why the ones that do not export cannot;
``i2i export`` prints that reason in one line (:func:`refuse_export`).
"""

from __future__ import annotations

from typing import Any

from i2i.errors import I2IError

#: architecture id -> (class name, tiny hyperparameters, test side): small instances of spandrel's classes
TINY: dict[str, tuple[str, dict[str, Any], int]] = {
    "Compact": ("SRVGGNetCompact", {"num_feat": 8, "num_conv": 2, "upscale": 4}, 16),
    "SwiftSRGAN": ("Generator", {"num_channels": 8, "num_blocks": 1, "upscale_factor": 4}, 16),
    "HAT": ("HAT", {"img_size": 16, "embed_dim": 12, "depths": (1,), "num_heads": (2,), "window_size": 4,
                    "squeeze_factor": 6, "num_feat": 16, "upscale": 2, "upsampler": "pixelshuffle"}, 16),
    "GRL": ("GRL", {"img_size": 16, "embed_dim": 16, "depths": [1], "num_heads_window": [1], "num_heads_stripe": [1],
                    "window_size": 4, "stripe_size": [4, 4], "stripe_groups": [None, None], "upscale": 2,
                    "upsampler": "pixelshuffle"}, 16),
    "Swin2SR": ("Swin2SR", {"img_size": 16, "embed_dim": 12, "depths": [1], "num_heads": [2], "window_size": 4,
                            "upscale": 2, "upsampler": "pixelshuffle"}, 16),
    "SwinIR": ("SwinIR", {"img_size": 16, "embed_dim": 12, "depths": [1], "num_heads": [2], "window_size": 4,
                          "upscale": 2, "upsampler": "pixelshuffle"}, 16),
    "LaMa": ("LaMa", {"in_nc": 4, "out_nc": 3}, 32),
    "OmniSR": ("OmniSR", {"num_feat": 16, "block_num": 1, "window_size": 4, "res_num": 1, "up_scale": 2}, 16),
    "SCUNet": ("SCUNet", {"config": [2, 2, 2, 2, 2, 2, 2], "dim": 64, "input_resolution": 64}, 64),
    "FBCNN": ("FBCNN", {"nb": 2}, 32),
    "Uformer": ("Uformer", {"img_size": 128, "embed_dim": 8, "depths": [1] * 9, "num_heads": [1] * 9, "win_size": 4}, 128),
    "RGT": ("RGT", {"img_size": 16, "embed_dim": 12, "depth": [1], "num_heads": [2], "split_size": [4, 4], "upscale": 2}, 16),
    "DAT": ("DAT", {"img_size": 16, "embed_dim": 16, "depth": [1], "num_heads": [2], "split_size": [2, 4],
                    "expansion_factor": 2.0, "upscale": 2}, 16),
    "CRAFT": ("CRAFT", {"embed_dim": 12, "depths": [1], "num_heads": [2], "window_size": 8, "split_size_0": 2,
                        "split_size_1": 8, "upscale": 2}, 16),
    "KBNet": ("KBNet_s", {"width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]}, 16),
    "DITN": ("DITN_Real", {"dim": 12, "ITL_blocks": 1, "SAL_blocks": 1, "UFONE_blocks": 1, "upscale": 2}, 16),
    "MMRealSR": ("MMRRDBNet_test", {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_block": 1, "num_grow_ch": 4,
                                    "num_feats": [8, 8, 8, 8], "num_blocks": [1, 1, 1, 1]}, 32),
    "SPAN": ("SPAN", {"num_in_ch": 3, "num_out_ch": 3, "feature_channels": 8, "upscale": 2}, 16),
    "RealCUGAN": ("UpCunet2x", {}, 32),
    "SAFMN": ("SAFMN", {"dim": 8, "n_blocks": 1, "upscaling_factor": 2}, 16),
    "SAFMNBCIE": ("SAFMN_BCIE", {"dim": 8, "n_blocks": 1, "num_layers": 1, "upscaling_factor": 2}, 16),
    "DCTLSA": ("DCTLSA", {"upscale": 2}, 16),
    "FFTformer": ("FFTformer", {"dim": 8, "num_blocks": [1, 1, 1], "num_refinement_blocks": 1,
                                "ffn_expansion_factor": 1}, 32),
    "NAFNet": ("NAFNet", {"width": 8, "middle_blk_num": 1, "enc_blk_nums": [1], "dec_blk_nums": [1]}, 16),
    "ATD": ("ATD", {"img_size": 16, "embed_dim": 12, "depths": (2,), "num_heads": (2,), "window_size": 4,
                    "category_size": 16, "num_tokens": 8, "reducted_dim": 4, "upscale": 2, "upsampler": "pixelshuffle"}, 16),
    "MixDehazeNet": ("MixDehazeNet", {"embed_dims": [8, 16, 32, 16, 8], "depths": [1, 1, 1, 1, 1]}, 40),
    "DRUNet": ("DRUNet", {"in_nc": 4, "out_nc": 3, "nc": [8, 16, 32, 64], "nb": 2}, 16),
    "DnCNN": ("DnCNN", {"in_nc": 3, "out_nc": 3, "nc": 8, "nb": 8}, 16),
    "IPT": ("IPT", {"n_feats": 16, "num_heads": 2, "num_layers": 1}, 48),
    "DRCT": ("DRCT", {"img_size": 16, "embed_dim": 12, "depths": (1,), "num_heads": (2,), "window_size": 4, "gc": 8,
                      "upscale": 2, "upsampler": "pixelshuffle"}, 16),
    "ESRGAN": ("RRDBNet", {"num_filters": 8, "num_blocks": 1}, 16),
    "PLKSR": ("PLKSR", {"dim": 16, "n_blocks": 1, "kernel_size": 7, "upscaling_factor": 2}, 16),
    "RetinexFormer": ("RetinexFormer", {"n_feat": 8, "stage": 1, "num_blocks": [1, 1, 1]}, 16),
    "HVICIDNet": ("CIDNet", {"channels": [8, 8, 16, 32], "heads": [1, 1, 2, 4]}, 16),
    "SeemoRe": ("SeemoRe", {"scale": 2, "num_experts": 2, "num_layers": 1, "embedding_dim": 8, "recursive": 1}, 16),
    "MoSR": ("MoSR", {"upscale": 2, "n_block": 1, "dim": 8}, 16),
    "MoESR": ("MoESR", {"scale": 2, "dim": 16, "n_blocks": 1, "n_block": 1, "upsample_dim": 16}, 16),
    "RCAN": ("RCAN", {"scale": 2, "n_resgroups": 1, "n_resblocks": 1, "n_feats": 8, "reduction": 2}, 16),
    "FDAT": ("FDAT", {"scale": 2, "embed_dim": 16, "num_groups": 1, "depth_per_group": 1, "num_heads": 2,
                      "window_size": 4, "mid_dim": 8}, 16),
    # spandrel-extra-arches (non-commercial)
    "SRFormer": ("SRFormer", {"img_size": 16, "embed_dim": 12, "depths": (1,), "num_heads": (2,), "window_size": 4,
                              "upscale": 2, "upsampler": "pixelshuffle"}, 16),
    "M3SNet": ("M3SNet", {"width": 8, "enc_blk_nums": [1, 1, 1, 1], "dec_blk_nums": [1, 1, 1, 1]}, 16),
    "Restormer": ("Restormer", {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1, "heads": [1, 1, 1, 1]}, 16),
    "MPRNet": ("MPRNet", {"n_feat": 8, "scale_unetfeats": 4, "scale_orsnetfeats": 4, "num_cab": 1, "reduction": 2}, 16),
    "MIRNet2": ("MIRNet_v2", {"n_MRB": 1}, 16),
}

#: architecture id -> why its ONNX export fails (measured by tools/spandrel_table.py)
NO_ONNX: dict[str, str] = {
    "GRL": "PyTorch's TorchScript tracer crashes (segmentation fault in libtorch) on its stripe attention",
    "ATD": "torch.onnx fails on it with both exporters (TorchScript and dynamo)",
    "IPT": "torch.onnx fails on it with both exporters (TorchScript and dynamo)",
    **dict.fromkeys(("SCUNet", "Uformer", "RGT", "DAT", "CRAFT", "DITN", "DCTLSA", "HVICIDNet", "MPRNet"),
                    "the traced graph keeps the sample's sizes in its window / attention reshapes, so onnxruntime "
                    "fails at any other size"),
}

#: architecture id -> why the table does not build it small (its row says what spandrel says of it)
SKIPPED: dict[str, str] = {
    "GFPGAN": "a 512x512 face restorer (86M parameters) with no smaller form: too heavy for the CPU table run",
    "AuraSR": "a ~600M-parameter GigaGAN upsampler: too heavy to build here",
    "CodeFormer": "a 512x512 face restorer (94M parameters) with no smaller form",
    "MAT": "a 512x512-only inpainter (62M parameters) without hyperparameters to shrink",
    "DDColor": "a ConvNeXt-L colouriser (228M parameters)",
    "AdaCode": "a 256-px codebook restorer whose detection needs its published codebook sizes",
    "FeMaSR": "a 256-px codebook restorer whose detection needs its published codebook sizes",
    "RestoreFormer": "a 512x512 face restorer (72M parameters); spandrel's detection reads only its published configuration",
}


def refuse_export(arch: str) -> None:
    """Raise a one-line I2IError when ``arch`` is known not to export to ONNX."""
    reason = NO_ONNX.get(arch)
    if reason:
        raise I2IError(f"spandrel {arch} cannot be exported to ONNX: {reason} (see docs/spandrel.md)")


#: the table's columns, in order (docs/spandrel.md)
COLUMNS = ("architecture", "package / licence", "task", "scale", "loads", "tiles", "ONNX exports", "parity")


def _levels(a: Any, b: Any) -> int:
    import numpy as np

    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def check_row(arch: str, workdir: Any, onnx: bool = True) -> dict[str, str]:
    """Build ``arch`` small (:data:`TINY`) with random weights and measure every column.

    - loads: the network's state_dict saved as a .pth opens through ``i2i.load`` with no flags, and
      gives the very outputs of the network it was saved from;
    - tiles: "yes" when i2i allows tiles (and how far a tiled run is from the whole, in 8-bit levels),
      else "no" with spandrel's reason;
    - ONNX exports / parity: ``i2i export``'s exporter, then onnxruntime against PyTorch at a size
      other than the export's (max |diff| on [0, 1] outputs; "yes" within 1e-4).
    """
    from pathlib import Path

    import numpy as np
    import torch

    import i2i
    from i2i.errors import I2IError

    from .arches import arch_info, build, encode

    info = arch_info(arch)
    cls, hyper, side = TINY[arch]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build(arch, cls, encode(hyper)).eval()
    io = net.describe()
    row = {"architecture": f"{arch} ({cls})", "package / licence": f"{info.package}: {info.license}",
           "task": io["info"]["purpose"], "scale": f"x{io['scale']}"}
    path = Path(workdir) / f"{arch}.pth"
    torch.save(net.net.state_dict(), path)
    g = i2i.load(path, device="cpu")
    rng = np.random.default_rng(0)
    m = max(int(g.meta.size_multiple), 1)
    image = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    mask = None
    if g.meta.extra_inputs:
        mask = np.zeros((side, side), np.uint8)
        mask[side // 4 : side // 2, side // 4 : 3 * side // 4] = 255
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    extras = [torch.from_numpy(mask > 127).float()[None, None]] if mask is not None else []
    from .arches import loader

    descriptor = loader().load_from_file(path)  # what spandrel itself makes of the file
    with torch.no_grad():
        want = descriptor.model.eval()(x.clone(), *extras) if descriptor._call_fn is None else descriptor._call_fn(
            descriptor.model.eval(), x.clone(), *extras)  # a copy: RCAN scales its input in place
        want = want.clamp(0, 1).numpy()
        original = net(x, *extras).numpy()
    got = g.run(x.numpy(), *(e.numpy() for e in extras))
    same = float(np.abs(got - want).max())
    how = "" if g.meta.name.startswith("spandrel") else f" (as i2i's {g.meta.name})"
    if float(np.abs(want - original).max()) > 1e-5:  # spandrel's detection lost a setting of this small instance
        how += " (spandrel's detection misreads this small instance)"
    row["loads"] = f"yes{how}" if same <= 1e-5 else f"no: i2i's rebuild differs from spandrel's by {same:.2g}"
    if g.meta.tiling == "local":
        big = rng.integers(0, 256, (4 * side, 4 * side, 3), dtype=np.uint8)
        whole = g(big)
        tiled = g(big, tile=2 * side, overlap=32)  # i2i's default overlap
        row["tiles"] = f"yes ({_levels(whole, tiled)} levels from whole)"
    else:
        from .arches import WHOLE_IMAGE

        why = ("inpainting" if g.meta.extra_inputs else "tiles differ from the whole image" if arch in WHOLE_IMAGE
               else "spandrel discourages it")
        row["tiles"] = f"no ({why})"
    if not onnx:
        row["ONNX exports"] = row["parity"] = "not run"
        return row
    from i2i_export.exporter import export_onnx

    onnx_path = Path(workdir) / f"{arch}.onnx"
    try:
        export_onnx(g.module, g.meta, onnx_path)
    except I2IError as exc:
        why = str(exc).splitlines()[0].replace(" (see docs/spandrel.md)", "")
        row["ONNX exports"], row["parity"] = f"no: {why[:220]}", "-"
        return row
    import onnxruntime as ort

    h, w = side + m * max(1, 8 // m), side  # another size than the export's sample
    h = max(h, g.meta.min_size)
    if g.meta.info.get("square_input"):
        w = h
    xin = torch.rand(1, g.meta.in_channels, h, w, generator=torch.Generator().manual_seed(1))
    ein = [(torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(2)) > 0.5).float()] if extras else []
    with torch.no_grad():
        ref = g.module(xin, *ein).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    try:
        out = sess.run(["output"], dict(zip([i.name for i in sess.get_inputs()], [t.numpy() for t in (xin, *ein)])))[0]
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors: one line for the table
        row["ONNX exports"], row["parity"] = "no: fixed sizes baked in (runs only at the export's size)", "-"
        return row
    if out.shape != ref.shape:
        row["ONNX exports"], row["parity"] = f"no: output {out.shape} at {h}x{w}, PyTorch {ref.shape}", "-"
        return row
    diff = float(np.abs(out - ref).max())
    row["ONNX exports"] = "yes" if diff <= 1e-4 else "no: onnxruntime differs from PyTorch"
    row["parity"] = f"{diff:.1e}"
    return row

