"""Rewrite wide 3x3 convolutions of an ONNX graph as Winograd F(4x4, 3x3) for onnxruntime's CPU provider.

onnxruntime computes convolutions directly (MLAS); it has no Winograd kernels. For a ResNet
generator, whose time is ~85% in 3x3 256-channel residual convolutions, that leaves it barely ahead
of PyTorch. F(4x4, 3x3) computes each 4x4 output tile from a 6x6 input tile with 36 multiplications
per (input, output) channel pair instead of 144: the convolution becomes

    input transform   V = B^T d B    a depthwise Conv: 36 fixed 6x6 kernels per channel, stride 4
    36 channel GEMMs  M = U . V      one batched MatMul with U = G g G^T precomputed from the weights
    output transform  Y = A^T M A    a MatMul with the 16x36 transform, DepthToSpace(4) back to the image

(Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016). Only standard operators
are used, so any runtime can read the file, but the rewrite pays off only on CPUs: GPU runtimes
(cuDNN, TensorRT) already choose Winograd themselves and run the plain graph faster. Rounding
differs from the direct sum by ~1e-5 relative; ``export_onnx`` verifies the file against PyTorch.

Maps of any size work: the input is padded by 3 on the bottom and right inside the depthwise Conv
(so ceil(H/4) tiles cover H outputs) and the output is sliced back to the convolution's size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

# F(4x4, 3x3) transforms (Lavin & Gray, section 4.2).
BT = np.array([[4, 0, -5, 0, 1, 0],
               [0, -4, -4, 1, 1, 0],
               [0, 4, -4, -1, 1, 0],
               [0, -2, -1, 2, 1, 0],
               [0, 2, -1, -2, 1, 0],
               [0, 4, 0, -5, 0, 1]], np.float64)
G = np.array([[1 / 4, 0, 0],
              [-1 / 6, -1 / 6, -1 / 6],
              [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6],
              [1 / 24, -1 / 12, 1 / 6],
              [0, 0, 1]], np.float64)
AT = np.array([[1, 1, 1, 1, 1, 0],
               [0, 1, -1, 2, -2, 0],
               [0, 1, 1, 4, 4, 0],
               [0, 1, -1, 8, -8, 1]], np.float64)

#: Narrower convolutions gain too little from the GEMMs to pay for the transforms.
MIN_CHANNELS = 128


def rewrite_conv3x3(model: onnx.ModelProto, min_channels: int = MIN_CHANNELS) -> int:
    """Replace every float32 3x3 stride-1 ungrouped Conv with both channel counts >= ``min_channels``
    (weights and bias constant) by its Winograd form, in place; returns how many were replaced."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    for node in graph.node:  # the exporter shares equal tensors (e.g. zero biases) through Identity
        if node.op_type == "Identity" and node.input[0] in constants:
            constants[node.output[0]] = constants[node.input[0]]

    nodes, added, count = [], [], 0

    def const(name: str, array: np.ndarray) -> str:
        added.append(numpy_helper.from_array(array, name))
        return name

    for node in graph.node:
        weight = constants.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if weight is None or weight.data_type != TensorProto.FLOAT or not _eligible(weight.dims, attrs, min_channels):
            nodes.append(node)
            continue
        bias_name = node.input[2] if len(node.input) > 2 else ""
        if bias_name and bias_name not in constants:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weight).astype(np.float64)
        out_ch, in_ch = w.shape[:2]
        bias = numpy_helper.to_array(constants[bias_name]) if bias_name else np.zeros(out_ch)
        pt, pl, pb, pr = (list(attrs.get("pads", [0, 0, 0, 0])) + [0] * 4)[:4]
        p = f"winograd{count}_"
        count += 1
        # depthwise kernel k = (i, j) of channel c is outer(BT[i], BT[j]): V[c*36 + k] = (B^T d B)[i, j]
        kv = np.tile(np.einsum("ia,jb->ijab", BT, BT).reshape(36, 1, 6, 6), (in_ch, 1, 1, 1))
        u = np.einsum("ia,ocab,jb->ijoc", G, w, G).reshape(36, out_ch, in_ch)
        ka = np.einsum("ia,jb->ijab", AT, AT).reshape(16, 36)
        x, y = node.input[0], node.output[0]
        nodes += [
            helper.make_node("Conv", [x, const(p + "kv", kv.astype(np.float32))], [p + "v"], group=in_ch,
                             kernel_shape=[6, 6], strides=[4, 4], pads=[pt, pl, pb + 3, pr + 3]),  # N C*36 th tw
            helper.make_node("Reshape", [p + "v", const(p + "ctk", np.array([0, in_ch, 36, -1], np.int64))], [p + "v2"]),
            helper.make_node("Transpose", [p + "v2"], [p + "v3"], perm=[0, 2, 1, 3]),       # N 36 C T
            helper.make_node("MatMul", [const(p + "u", u.astype(np.float32)), p + "v3"], [p + "m"]),  # N 36 O T
            helper.make_node("Transpose", [p + "m"], [p + "m2"], perm=[0, 2, 1, 3]),        # N O 36 T
            helper.make_node("MatMul", [const(p + "a", ka.astype(np.float32)), p + "m2"], [p + "y16"]),  # N O 16 T
            helper.make_node("Shape", [p + "v"], [p + "vshape"]),
            helper.make_node("Slice", [p + "vshape", const(p + "i0", np.array([0], np.int64)),
                                       const(p + "i1", np.array([1], np.int64))], [p + "n"]),
            helper.make_node("Slice", [p + "vshape", const(p + "i2", np.array([2], np.int64)),
                                       const(p + "i4", np.array([4], np.int64))], [p + "tiles"]),
            helper.make_node("Concat", [p + "n", const(p + "o16", np.array([out_ch * 16], np.int64)), p + "tiles"],
                             [p + "tshape"], axis=0),
            helper.make_node("Reshape", [p + "y16", p + "tshape"], [p + "y16img"]),         # N O*16 th tw
            helper.make_node("DepthToSpace", [p + "y16img"], [p + "ynob"], blocksize=4, mode="CRD"),
            helper.make_node("Add", [p + "ynob", const(p + "b", bias.reshape(out_ch, 1, 1).astype(np.float32))],
                             [p + "yfull"]),
            # back to the convolution's own size: H + pt + pb - 2 by W + pl + pr - 2
            helper.make_node("Shape", [x], [p + "xshape"]),
            helper.make_node("Slice", [p + "xshape", p + "i2", p + "i4"], [p + "xhw"]),
            helper.make_node("Add", [p + "xhw", const(p + "grow", np.array([pt + pb - 2, pl + pr - 2], np.int64))],
                             [p + "yhw"]),
            helper.make_node("Slice", [p + "yfull", const(p + "zeros", np.array([0, 0], np.int64)), p + "yhw",
                                       const(p + "axes", np.array([2, 3], np.int64))], [y]),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(added)
    _drop_unused_initializers(model)
    return count


def _eligible(dims: list[int], attrs: dict, min_channels: int) -> bool:
    return (
        len(dims) == 4 and tuple(dims[2:]) == (3, 3) and min(dims[0], dims[1]) >= min_channels
        and attrs.get("group", 1) == 1
        and list(attrs.get("strides", [1, 1])) == [1, 1]
        and list(attrs.get("dilations", [1, 1])) == [1, 1]
        and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
    )


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {name for node in model.graph.node for name in node.input}
    used |= {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
