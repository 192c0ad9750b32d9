"""``i2i export --optimize cpu``: an ONNX graph rewritten for onnxruntime's CPU provider, standard operators only.

``optimize_for_cpu(model)`` returns the rewritten model and how many convolutions it rewrote:

1. **onnxscript's optimizer** (``onnxscript.optimizer.optimize``): constant folding, dead code, and
   its default rewrite rules (BatchNorm folded into a preceding ConvTranspose, the reflection pads'
   shape arithmetic folded to constants). On its own it is within noise for the built-in generators
   in onnxruntime, which does the same at load time (BENCHMARKS.md); it leaves plain initializers
   behind every convolution for the passes below, and a file that reads cleanly.
2. **Wide 3x3 convolutions as Winograd F(4x4, 3x3)** (``rewrite_conv3x3``). onnxruntime computes
   convolutions directly (MLAS); it has no Winograd kernels. For a ResNet generator, whose time is
   ~70% in 3x3 256-channel residual convolutions, that leaves it barely ahead of PyTorch. F(4x4, 3x3)
   computes each 4x4 output tile from a 6x6 input tile with 36 multiplications per (input, output)
   channel pair instead of 144: the convolution becomes

       input transform   V = B^T d B    a depthwise Conv: 36 fixed 6x6 kernels per channel, stride 4
       36 channel GEMMs  M = U . V      one batched MatMul with U = G g G^T precomputed from the weights
       output transform  Y = A^T M A    one MatMul with the 16x36 transform, DepthToSpace(4) back to the image

   A bias is added after the output transform, or left out where only InstanceNormalization reads the
   convolution (its mean subtraction cancels a per-channel bias: a ResNet generator's blocks).

   (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016). Maps of any size work:
   the input is padded by 3 on the bottom and right inside the depthwise Conv (so ceil(H/4) tiles
   cover H outputs) and the output is sliced back to the convolution's size. Rounding differs from
   the direct sum by ~1e-5 relative.
3. **Large kernels with few outputs through space-to-depth** (``rewrite_narrow_conv``). A generator's
   last layer (7x7, 64 -> 3 channels) runs badly in MLAS, which pads 3 output channels to 8 and gets
   little reuse from 64 inputs. SpaceToDepth(2) turns it into a 4x4 convolution from 256 to 12
   channels on a quarter of the pixels, and DepthToSpace(2) puts the 2x2 output blocks back: the
   same sums, arranged for the GEMM.

Passes 2 and 3 are i2i's own: neither onnxscript's rules nor onnxslim's have them. The transposed
convolutions are left as they are (a phase rewrite measured ~4%, inside the noise).

The rewritten graph reads in any runtime, but pays off only on CPUs: GPU runtimes (cuDNN, TensorRT)
choose their own algorithms and run the plain graph faster, which is why it is an export-time choice
and files stay plain by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    import onnx

# The Winograd F(4x4, 3x3) transforms (Lavin & Gray 2016, section 4.2): Y = A^T [(G g G^T) * (B^T d B)] A.
# The i2i_cpu plugin has its own copy for its PyTorch layers; exporting does not depend on that plugin.
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
#: rewrite_narrow_conv: at most this many output channels, kernels of at least this size.
NARROW_MAX_OUT, NARROW_MIN_KERNEL = 4, 5


def optimize_for_cpu(model: onnx.ModelProto, min_channels: int = MIN_CHANNELS) -> tuple[onnx.ModelProto, int]:
    """onnxscript's optimizer, then the Winograd and space-to-depth rewrites; returns the new model and
    how many convolutions were rewritten. ``model`` itself is left as it was.

    ``min_channels`` is the Winograd rewrite's width threshold (tests pass 1 to rewrite every 3x3
    convolution of a tiny network)."""
    import onnxscript.optimizer

    optimized = onnxscript.optimizer.optimize(model)
    count = rewrite_conv3x3(optimized, min_channels) + rewrite_narrow_conv(optimized)
    return optimized, count


def rewrite_conv3x3(model: onnx.ModelProto, min_channels: int = MIN_CHANNELS) -> int:
    """Replace every float32 3x3 stride-1 ungrouped Conv with both channel counts >= ``min_channels``
    (weights and bias constant) by its Winograd form, in place; returns how many were replaced."""

    def eligible(dims: list[int], attrs: dict) -> bool:
        return tuple(dims[2:]) == (3, 3) and min(dims[0], dims[1]) >= min_channels and _plain_conv(attrs)

    return _rewrite_convs(model, "winograd", eligible, _winograd_nodes)


def rewrite_narrow_conv(model: onnx.ModelProto, max_out: int = NARROW_MAX_OUT, min_kernel: int = NARROW_MIN_KERNEL) -> int:
    """Replace every float32 stride-1 ungrouped square Conv with at most ``max_out`` output channels and a
    kernel of at least ``min_kernel`` by SpaceToDepth(2) -> Conv -> DepthToSpace(2), in place."""

    def eligible(dims: list[int], attrs: dict) -> bool:
        return dims[0] <= max_out and dims[2] == dims[3] >= min_kernel and _plain_conv(attrs)

    return _rewrite_convs(model, "narrow", eligible, _space_to_depth_nodes)


@dataclass
class _Conv:
    """A Conv a rewrite replaces: input and output names, constant weights and bias, pads, and the
    node's other attributes."""

    x: str
    y: str
    weight: np.ndarray  # float32, as stored
    bias: np.ndarray
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    attrs: dict[str, Any]


#: ``const(name, array)``: adds a constant under the replacement's name prefix; returns its name.
Const = Callable[[str, np.ndarray], str]


def _rewrite_convs(model: onnx.ModelProto, prefix: str, eligible: Callable[[list[int], dict], bool],
                   emit: Callable[[_Conv, str, Const], list[Any]]) -> int:
    """Replace each Conv node with constant float32 4-D weights and a constant bias, if any,
    that is ``eligible(weight_dims, attributes)`` by the nodes ``emit(conv, name_prefix, const)``
    returns; in place. Returns how many were replaced."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    constants = _constants(graph)
    readers: dict[str, list[tuple[str, int]]] = {}  # tensor -> (op_type, input index) of each node reading it
    for node in graph.node:
        for i, name in enumerate(node.input):
            readers.setdefault(name, []).append((node.op_type, i))
    outputs = {o.name for o in graph.output}
    nodes: list[Any] = []
    count = 0
    for node in graph.node:
        weight = constants.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        bias_name = node.input[2] if len(node.input) > 2 else ""
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (weight is None or weight.data_type != TensorProto.FLOAT or len(weight.dims) != 4
                or not eligible(list(weight.dims), attrs)
                or (bias_name and bias_name not in constants)):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weight)
        bias = numpy_helper.to_array(constants[bias_name]) if bias_name else np.zeros(w.shape[0])
        if node.output[0] not in outputs and readers.get(node.output[0], []) and all(
                r == ("InstanceNormalization", 0) for r in readers[node.output[0]]):
            # InstanceNormalization subtracts each channel's mean: a per-channel bias before it cancels
            # exactly (up to rounding), and the rewrites then need no Add for it (ResNet blocks).
            bias = np.zeros_like(bias)
        pt, pl, pb, pr = (list(attrs.get("pads", [0, 0, 0, 0])) + [0] * 4)[:4]
        p = f"{prefix}{count}_"
        count += 1

        def const(name: str, array: np.ndarray, p: str = p) -> str:
            _add_initializer(graph, p + name, array)
            return p + name

        nodes += emit(_Conv(node.input[0], node.output[0], w, bias, (pt, pl, pb, pr), attrs), p, const)
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused_initializers(model)
    return count


def _winograd_nodes(conv: _Conv, p: str, const: Const) -> list[Any]:
    from onnx import helper

    out_ch, in_ch = conv.weight.shape[:2]
    pt, pl, pb, pr = conv.pads
    # depthwise kernel k = (i, j) of channel c is outer(BT[i], BT[j]): V[c*36 + k] = (B^T d B)[i, j]
    kv = np.tile(np.einsum("ia,jb->ijab", BT, BT).reshape(36, 1, 6, 6), (in_ch, 1, 1, 1))
    # U = G g G^T per channel pair, in float64 (stored as float32), as (36, out, in) for the batched MatMul
    gw = np.tensordot(conv.weight.astype(np.float64), G, axes=([3], [1]))  # o c a j
    u = np.tensordot(G, gw, axes=([1], [2])).transpose(0, 3, 1, 2).reshape(36, out_ch, in_ch)  # (i j) o c
    ka = np.einsum("ia,jb->ijab", AT, AT).reshape(16, 36)
    return [
        *_spatial_size(conv.x, p, const),
        helper.make_node("Conv", [conv.x, const("kv", kv.astype(np.float32))], [p + "v"], group=in_ch,
                         kernel_shape=[6, 6], strides=[4, 4], pads=[pt, pl, pb + 3, pr + 3]),  # N C*36 th tw
        helper.make_node("Reshape", [p + "v", const("ctk", np.array([0, in_ch, 36, -1], np.int64))], [p + "v2"]),
        helper.make_node("Transpose", [p + "v2"], [p + "v3"], perm=[0, 2, 1, 3]),       # N 36 C T
        helper.make_node("MatMul", [const("u", np.ascontiguousarray(u, np.float32)), p + "v3"], [p + "m"]),  # N 36 O T
        helper.make_node("Reshape", [p + "m", const("flat", np.array([0, 36, -1], np.int64))], [p + "m2"]),  # N 36 O*T
        # One GEMM for the output transform, leaving (p, q) outermost: DepthToSpace's DCR order
        helper.make_node("MatMul", [const("a", ka.astype(np.float32)), p + "m2"], [p + "y16"]),  # N 16 O*T
        helper.make_node("Shape", [p + "v"], [p + "vshape"]),
        helper.make_node("Slice", [p + "vshape", const("i0", np.array([0], np.int64)),
                                   const("i1", np.array([1], np.int64))], [p + "n"]),
        helper.make_node("Slice", [p + "vshape", p + "i2", p + "i4"], [p + "tiles"]),
        helper.make_node("Concat", [p + "n", const("o16", np.array([out_ch * 16], np.int64)), p + "tiles"],
                         [p + "tshape"], axis=0),
        helper.make_node("Reshape", [p + "y16", p + "tshape"], [p + "y16img"]),         # N 16*O th tw
        helper.make_node("DepthToSpace", [p + "y16img"], [p + "ynob"], blocksize=4, mode="DCR"),
        *([helper.make_node("Add", [p + "ynob", const("b", conv.bias.reshape(out_ch, 1, 1).astype(np.float32))],
                            [p + "yfull"])] if conv.bias.any() else []),
        *_crop_to_conv_size(conv, p, const, p + "yfull" if conv.bias.any() else p + "ynob"),
    ]


def _space_to_depth_nodes(conv: _Conv, p: str, const: Const) -> list[Any]:
    from onnx import helper

    w = conv.weight
    out_ch, in_ch, k = w.shape[0], w.shape[1], w.shape[2]
    k2 = k // 2 + 1
    # Output pixel (2i+dy, 2j+dx) reads input (2(i+a)+sy, 2(j+b)+sx) with kernel tap
    # (2a+sy-dy, 2b+sx-dx): SpaceToDepth puts (sy, sx) in the channels, DepthToSpace takes (dy, dx) out.
    w2 = np.zeros((out_ch * 4, 4 * in_ch, k2, k2), np.float32)
    for dy, dx, sy, sx, a, b in np.ndindex(2, 2, 2, 2, k2, k2):
        ky, kx = 2 * a + sy - dy, 2 * b + sx - dx
        if 0 <= ky < k and 0 <= kx < k:
            block = (sy * 2 + sx) * in_ch
            w2[dy * 2 + dx::4, block:block + in_ch, a, b] = w[:, :, ky, kx]
    pt, pl, pb, pr = conv.pads
    return [
        # the conv's own padding, plus a row/column where the padded size is odd (SpaceToDepth needs even)
        *_spatial_size(conv.x, p, const),
        helper.make_node("Add", [p + "xhw", const("pads_hw", np.array([pt + pb, pl + pr], np.int64))], [p + "phw"]),
        helper.make_node("Mod", [p + "phw", const("two", np.array([2, 2], np.int64))], [p + "odd"]),
        helper.make_node("Add", [const("tail0", np.array([pb, pr], np.int64)), p + "odd"], [p + "tail"]),
        helper.make_node("Concat", [const("head", np.array([0, 0, pt, pl, 0, 0], np.int64)), p + "tail"],
                         [p + "pads"], axis=0),
        helper.make_node("Pad", [conv.x, p + "pads"], [p + "xp"]),
        helper.make_node("SpaceToDepth", [p + "xp"], [p + "xs"], blocksize=2),
        helper.make_node("Conv", [p + "xs", const("w", w2), const("b", np.repeat(conv.bias, 4).astype(np.float32))],
                         [p + "ys"], kernel_shape=[k2, k2]),
        helper.make_node("DepthToSpace", [p + "ys"], [p + "yfull"], blocksize=2, mode="CRD"),
        *_crop_to_conv_size(conv, p, const, p + "yfull"),
    ]


def _spatial_size(x: str, p: str, const: Const) -> list[Any]:
    """Nodes computing ``p + "xhw"``, the height and width of ``x`` (and constants ``p + "i2"``, ``"i4"``)."""
    from onnx import helper

    return [
        helper.make_node("Shape", [x], [p + "xshape"]),
        helper.make_node("Slice", [p + "xshape", const("i2", np.array([2], np.int64)),
                                   const("i4", np.array([4], np.int64))], [p + "xhw"]),
    ]


def _crop_to_conv_size(conv: _Conv, p: str, const: Const, full: str) -> list[Any]:
    """Nodes slicing ``full`` (tiles may overhang the map) to the convolution's own output size,
    H + top + bottom - (k - 1) by W + left + right - (k - 1), as its output ``conv.y``. Reads
    ``p + "xhw"`` from :func:`_spatial_size`."""
    from onnx import helper

    pt, pl, pb, pr = conv.pads
    k = conv.weight.shape[2]
    return [
        helper.make_node("Add", [p + "xhw", const("grow", np.array([pt + pb + 1 - k, pl + pr + 1 - k], np.int64))],
                         [p + "yhw"]),
        helper.make_node("Slice", [full, const("zeros", np.array([0, 0], np.int64)), p + "yhw",
                                   const("axes", np.array([2, 3], np.int64))], [conv.y]),
    ]


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    """Drop the replaced convolutions' weights. Left alone: graphs with subgraphs (If/Loop bodies may
    read outer tensors) and initializers that are also graph inputs (older exporters list them)."""
    if any(a.type in (a.GRAPH, a.GRAPHS) for node in model.graph.node for a in node.attribute):
        return
    used = {name for node in model.graph.node for name in node.input}
    used |= {o.name for o in model.graph.output} | {i.name for i in model.graph.input}
    initializers = model.graph.initializer
    for i in reversed(range(len(initializers))):  # in place: copying the kept tensors costs seconds
        if initializers[i].name not in used:
            del initializers[i]


def _add_initializer(graph: onnx.GraphProto, name: str, array: np.ndarray) -> None:
    """Append ``array`` (float32 or int64) to the graph's initializers, copying its bytes once."""
    from onnx import TensorProto

    tensor = graph.initializer.add()
    tensor.name = name
    tensor.data_type = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64}[array.dtype]
    tensor.dims.extend(array.shape)
    tensor.raw_data = np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()


def _constants(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    constants = {t.name: t for t in graph.initializer}
    for node in graph.node:  # the exporter shares equal tensors (e.g. zero biases) through Identity
        if node.op_type == "Identity" and node.input[0] in constants:
            constants[node.output[0]] = constants[node.input[0]]
    return constants


def _plain_conv(attrs: dict) -> bool:
    return (
        attrs.get("group", 1) == 1
        and list(attrs.get("strides", [1, 1])) == [1, 1]
        and list(attrs.get("dilations", [1, 1])) == [1, 1]
        and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
    )
