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
       output transform  Y = A^T M A    one MatMul with the 16x36 transform; Col2Im puts the 4x4 blocks in place

   A bias is added after the output transform, or left out where only InstanceNormalization reads the
   convolution (its mean subtraction cancels a per-channel bias: a ResNet generator's blocks). The
   output transform leaves the blocks as (p, q, channel, tile); Col2Im reads that as one 4x4 block per
   (channel, tile) of a "tall" image, every channel's tile rows stacked, which a Reshape makes the
   channels again: onnxruntime's Col2Im is ~25% faster than its DepthToSpace here (0.62 against 0.72 ms).

   (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016). Maps of any size work:
   the input is padded by 3 on the bottom and right inside the depthwise Conv (so ceil(H/4) tiles
   cover H outputs) and the output is sliced back to the convolution's size. Rounding differs from
   the direct sum by ~1e-5 relative.
3. **Large kernels with few outputs on 2x2 output blocks** (``rewrite_narrow_conv``). A generator's
   last layer (7x7, 64 -> 3 channels) runs badly in MLAS, which pads 3 output channels to 8 or 16 and
   gets little reuse from 64 inputs. As an 8x8 convolution of stride 2 to 12 channels (each output
   channel once per position in a 2x2 block, the kernel shifted by that position), it computes the
   same sums on a quarter of the positions with 4x the outputs per read; DepthToSpace(2) puts the
   blocks back (18.5 -> ~6 ms for resnet_9blocks' last layer).
4. **Transposed convolutions by output phase** (``rewrite_conv_transpose``). onnxruntime computes
   ConvTranspose as a GEMM into a column buffer and a col2im scatter (~37 MB of columns for
   resnet_9blocks' last upsampler). With stride s, the outputs at each of the s x s phases are an
   ordinary small convolution of the input (a 3x3 stride-2 kernel: 1x1, 1x2, 2x1 and 2x2 taps, the
   same multiplications), which MLAS runs directly; Col2Im with s x s blocks interleaves the phases.
   resnet_9blocks' two upsamplers: ~26 -> ~15 ms. (A DepthToSpace interleave, measured in an earlier
   version, cost as much as it saved: onnxruntime's DepthToSpace moves ~3 GB/s.)

Passes 2 to 4 are i2i's own: neither onnxscript's rules nor onnxslim's have them. Col2Im is an
opset-18 operator, so the rewrites need files of opset 18 or later (i2i's default).

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
#: Col2Im, which the rewrites use, is an opset-18 operator.
MIN_OPSET = 18


def optimize_for_cpu(model: onnx.ModelProto, min_channels: int = MIN_CHANNELS) -> tuple[onnx.ModelProto, int]:
    """onnxscript's optimizer, then the Winograd, narrow-convolution and transposed-convolution rewrites;
    returns the new model and how many convolutions were rewritten. ``model`` itself is left as it was.

    ``min_channels`` is the Winograd rewrite's width threshold (tests pass 1 to rewrite every 3x3
    convolution of a tiny network).

    Raises ``I2IError`` for a model of opset < 18 (the rewrites use Col2Im)."""
    import onnxscript.optimizer

    require_opset(next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0))
    optimized = onnxscript.optimizer.optimize(model)
    count = rewrite_conv3x3(optimized, min_channels) + rewrite_narrow_conv(optimized) + rewrite_conv_transpose(optimized)
    return optimized, count


def require_opset(opset: int) -> None:
    """Raises ``I2IError`` (one line, what to do) if a model of this opset cannot take the rewrites."""
    from i2i.errors import I2IError

    if opset < MIN_OPSET:
        raise I2IError(f"--optimize cpu writes opset-{MIN_OPSET} operators (Col2Im) and this model is opset {opset}: "
                       f"export with --opset {MIN_OPSET} or later, or without --optimize")


def rewrite_conv3x3(model: onnx.ModelProto, min_channels: int = MIN_CHANNELS) -> int:
    """Replace every float32 3x3 stride-1 ungrouped Conv with both channel counts >= ``min_channels``
    (weights and bias constant) by its Winograd form, in place; returns how many were replaced."""

    def eligible(dims: list[int], attrs: dict) -> bool:
        return tuple(dims[2:]) == (3, 3) and min(dims[0], dims[1]) >= min_channels and _plain_conv(attrs)

    return _rewrite_convs(model, "winograd", eligible, _winograd_nodes)


def rewrite_narrow_conv(model: onnx.ModelProto, max_out: int = NARROW_MAX_OUT, min_kernel: int = NARROW_MIN_KERNEL) -> int:
    """Replace every float32 stride-1 ungrouped square Conv with at most ``max_out`` output channels and a
    kernel of at least ``min_kernel`` by a stride-2 Conv to 4x the channels -> DepthToSpace(2), in place;
    returns how many were replaced."""

    def eligible(dims: list[int], attrs: dict) -> bool:
        return dims[0] <= max_out and dims[2] == dims[3] >= min_kernel and _plain_conv(attrs)

    return _rewrite_convs(model, "narrow", eligible, _output_block_nodes)


def rewrite_conv_transpose(model: onnx.ModelProto) -> int:
    """Replace every float32 ungrouped, undilated ConvTranspose whose output is exactly stride x its input
    (kernel - pads + output_padding == stride, each axis: 3x3 stride 2 pad 1 output_padding 1, 4x4 stride
    2 pad 1) and whose every phase has taps, by one Conv per output phase -> Concat -> Col2Im, in place;
    returns how many were replaced."""

    def eligible(dims: list[int], attrs: dict) -> bool:
        strides = list(attrs.get("strides", [1, 1]))
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        extra = list(attrs.get("output_padding", [0, 0]))
        if (attrs.get("group", 1) != 1 or "output_shape" in attrs or max(strides) < 2
                or list(attrs.get("dilations", [1, 1])) != [1, 1]
                or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")):
            return False
        for axis in range(2):
            k, s, begin = dims[2 + axis], strides[axis], pads[axis]
            if k - begin - pads[2 + axis] + extra[axis] != s:
                return False
            if any(not 0 <= shift < taps for taps, shift in (_phase(k, s, begin, r)[1:] for r in range(s))):
                return False
        return True

    return _rewrite_convs(model, "phase", eligible, _phase_nodes, op_type="ConvTranspose")


@dataclass
class _Conv:
    """A Conv or ConvTranspose a rewrite replaces: input and output names, constant weights and bias,
    pads, and the node's other attributes."""

    x: str
    y: str
    weight: np.ndarray  # float32, as stored: Conv (out, in, kh, kw), ConvTranspose (in, out, kh, kw)
    bias: np.ndarray
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    attrs: dict[str, Any]


#: ``const(name, array)``: adds a constant under the replacement's name prefix; returns its name.
Const = Callable[[str, np.ndarray], str]


def _rewrite_convs(model: onnx.ModelProto, prefix: str, eligible: Callable[[list[int], dict], bool],
                   emit: Callable[[_Conv, str, Const], list[Any]], op_type: str = "Conv") -> int:
    """Replace each ``op_type`` node (Conv or ConvTranspose) with constant float32 4-D weights and a
    constant bias, if any, that is ``eligible(weight_dims, attributes)`` by the nodes
    ``emit(conv, name_prefix, const)`` returns; in place. Returns how many were replaced."""
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
        weight = constants.get(node.input[1]) if node.op_type == op_type and len(node.input) > 1 else None
        bias_name = node.input[2] if len(node.input) > 2 else ""
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (weight is None or weight.data_type != TensorProto.FLOAT or len(weight.dims) != 4
                or not eligible(list(weight.dims), attrs)
                or (bias_name and bias_name not in constants)):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weight)
        out_ch = w.shape[1] if op_type == "ConvTranspose" else w.shape[0]  # ConvTranspose: (in, out, kh, kw)
        bias = numpy_helper.to_array(constants[bias_name]) if bias_name else np.zeros(out_ch, np.float32)
        if node.output[0] not in outputs and readers.get(node.output[0], []) and all(
                r == ("InstanceNormalization", 0) for r in readers[node.output[0]]):
            # InstanceNormalization subtracts each channel's mean: a per-channel bias before it cancels
            # exactly (up to rounding), and the rewrites then need no Add for it (ResNet blocks).
            bias = np.zeros_like(bias)
        pt, pl, pb, pr = (list(attrs.get("pads", [0, 0, 0, 0])) + [0] * 4)[:4]
        p = f"{prefix}{count}_"
        count += 1

        made: set[str] = set()

        def const(name: str, array: np.ndarray, p: str = p, made: set[str] = made) -> str:
            if p + name not in made:  # emitters may ask for one constant twice: store it once
                made.add(p + name)
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
        helper.make_node("MatMul", [const("a", ka.astype(np.float32)), p + "m2"], [p + "y16"]),  # N 16 O*T
        # Col2Im reads (p, q) x (O, th, tw) as the 4x4 blocks of a tall O*4th x 4tw image, in place
        helper.make_node("Shape", [p + "v"], [p + "vshape"]),
        helper.make_node("Slice", [p + "vshape", const("i0", np.array([0], np.int64)),
                                   const("i1", np.array([1], np.int64))], [p + "n"]),
        helper.make_node("Slice", [p + "vshape", p + "i2", p + "i4"], [p + "tiles"]),
        helper.make_node("Mul", [p + "tiles", const("four", np.array([4, 4], np.int64))], [p + "hw4"]),
        helper.make_node("Mul", [p + "hw4", const("tall", np.array([out_ch, 1], np.int64))], [p + "tallhw"]),
        helper.make_node("Col2Im", [p + "y16", p + "tallhw", p + "four"], [p + "tallimg"], strides=[4, 4]),
        helper.make_node("Concat", [p + "n", const("o", np.array([out_ch], np.int64)), p + "hw4"], [p + "yshape"], axis=0),
        helper.make_node("Reshape", [p + "tallimg", p + "yshape"], [p + "ynob"]),                 # N O 4th 4tw
        *([helper.make_node("Add", [p + "ynob", const("b", conv.bias.reshape(out_ch, 1, 1).astype(np.float32))],
                            [p + "yfull"])] if conv.bias.any() else []),
        *_crop_to_conv_size(conv, p, const, p + "yfull" if conv.bias.any() else p + "ynob"),
    ]


def _output_block_nodes(conv: _Conv, p: str, const: Const) -> list[Any]:
    from onnx import helper

    w = conv.weight
    out_ch, in_ch, k = w.shape[0], w.shape[1], w.shape[2]
    # Output (2i+dy, 2j+dx) reads input (2i+dy+ky, 2j+dx+kx): block (i, j) of a stride-2 (k+1)x(k+1)
    # kernel, channel (o, dy, dx) holding the kernel shifted by (dy, dx) (DepthToSpace's CRD order).
    w2 = np.zeros((out_ch, 2, 2, in_ch, k + 1, k + 1), np.float32)
    for dy, dx in np.ndindex(2, 2):
        w2[:, dy, dx, :, dy:dy + k, dx:dx + k] = w
    pt, pl, pb, pr = conv.pads
    return [
        *_spatial_size(conv.x, p, const),
        # one more row/column of zeros: ceil(out / 2) blocks cover an odd output too
        helper.make_node("Conv", [conv.x, const("w", w2.reshape(out_ch * 4, in_ch, k + 1, k + 1)),
                                  const("b", np.repeat(conv.bias, 4).astype(np.float32))], [p + "blocks"],
                         kernel_shape=[k + 1, k + 1], strides=[2, 2], pads=[pt, pl, pb + 1, pr + 1]),
        helper.make_node("DepthToSpace", [p + "blocks"], [p + "yfull"], blocksize=2, mode="CRD"),
        *_crop_to_conv_size(conv, p, const, p + "yfull"),
    ]


def _phase(k: int, s: int, pad: int, r: int) -> tuple[int, int, int]:
    """One axis of ConvTranspose (kernel ``k``, stride ``s``, leading pad ``pad``) at output phase ``r``:
    outputs y[s*m + r] = sum_j x[m + shift - j] * w[first + s*j] for j < taps. Returns
    (first, taps, shift): the phase is a correlation of x with the ``taps`` reversed, padded
    ``taps - 1 - shift`` before and ``shift`` after (when the output is s x the input)."""
    first = (r + pad) % s
    return first, max(0, -(-(k - first) // s)), (r + pad) // s


def _phase_nodes(conv: _Conv, p: str, const: Const) -> list[Any]:
    from onnx import helper

    w = conv.weight  # in, out, kh, kw
    out_ch = w.shape[1]
    sy, sx = conv.attrs["strides"]
    pt, pl = conv.pads[:2]
    nodes, phases = [*_spatial_size(conv.x, p, const)], []
    for ry, rx in np.ndindex(sy, sx):
        (fy, ty, shy), (fx, tx, shx) = _phase(w.shape[2], sy, pt, ry), _phase(w.shape[3], sx, pl, rx)
        taps = w[:, :, fy::sy][:, :, :ty][:, :, ::-1][:, :, :, fx::sx][:, :, :, :tx][:, :, :, ::-1]
        name = f"{p}y{ry}_{rx}"
        nodes += [
            helper.make_node("Conv", [conv.x, const(f"w{ry}_{rx}", np.ascontiguousarray(taps.transpose(1, 0, 2, 3))),
                                      const("b", conv.bias.astype(np.float32))], [name],
                             kernel_shape=[ty, tx], pads=[ty - 1 - shy, tx - 1 - shx, shy, shx]),
            helper.make_node("Reshape", [name, const("column", np.array([0, out_ch, 1, -1], np.int64))], [name + "c"]),
        ]
        phases.append(name + "c")
    # (N, O, phase, H*W) is Col2Im's (channel, block row, block column) x position order
    return nodes + [
        helper.make_node("Concat", phases, [p + "cat"], axis=2),
        helper.make_node("Reshape", [p + "cat", const("colshape", np.array([0, out_ch * sy * sx, -1], np.int64))], [p + "cols"]),
        helper.make_node("Mul", [p + "xhw", const("s", np.array([sy, sx], np.int64))], [p + "yhw"]),
        helper.make_node("Col2Im", [p + "cols", p + "yhw", p + "s"], [conv.y], strides=[sy, sx]),
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
