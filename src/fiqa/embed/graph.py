"""ONNX graph surgery: fold block-quantised weights into float initialisers and make the batch axis dynamic.

OpenCV Zoo's int8 "bq" files store every weight as ``DequantizeLinear(int8, scales, zero_points)`` with the
``block_size`` attribute (opset 21), followed by a ``Reshape`` of the weight; the graph also lists every
initialiser (and some unused names) as graph inputs. onnxruntime runs such a graph, but dequantises on every call,
cannot fold the BatchNorms into the convolutions, and wants values for the dangling inputs. ``fold_constants``
evaluates those weight-only nodes once in numpy and returns a plain float32 graph with a single data input.

It also rewrites each PRelu whose slope is a constant as ``s * x + (1 - s) * Relu(x)`` (the same function). ONNX
Runtime's CPU provider runs PRelu unfused and converts the blocked convolution layout around every one; measured
on SFace (batch 16), PRelu was 40 % of the time and the layout conversions another 18 %. Rewritten, the graph runs
1.6x faster on one thread and 1.3x on two, with embeddings equal to cosine 0.9999999.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

FOLDABLE_OPS = ("DequantizeLinear", "Reshape")


def dequantize_blocked(quantized: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, *, axis: int = 1,
                       block_size: int = 0) -> np.ndarray:
    """numpy ``DequantizeLinear`` (ONNX opset 21): per-tensor, per-axis or blocked along ``axis``.

    Parameters
    ----------
    quantized : ndarray of int8/uint8/int32
    scale : ndarray, float
        Scalar (per-tensor), shape (quantized.shape[axis],) (per-axis, ``block_size == 0``), or the shape of
        ``quantized`` with ``ceil(shape[axis] / block_size)`` along ``axis`` (blocked).
    zero_point : ndarray like ``scale``, or None (zero)
    axis, block_size : int
        ONNX attributes.

    Returns
    -------
    ndarray of the shape of ``quantized``, float32
        ``(quantized - zero_point) * scale`` with each scale repeated over its block.
    """
    values = quantized.astype(np.float32)
    zero = np.zeros_like(scale, dtype=np.float32) if zero_point is None else zero_point.astype(np.float32)
    scale = scale.astype(np.float32)
    axis = axis % max(quantized.ndim, 1)
    if scale.ndim == 0 or (scale.size == 1 and block_size == 0):
        return (values - zero.reshape(())) * scale.reshape(())
    if block_size == 0:  # per-axis
        shape = [1] * quantized.ndim
        shape[axis] = -1
        return (values - zero.reshape(shape)) * scale.reshape(shape)
    length = quantized.shape[axis]
    scale = np.repeat(scale, block_size, axis=axis).take(np.arange(length), axis=axis)
    zero = np.repeat(zero, block_size, axis=axis).take(np.arange(length), axis=axis)
    return ((values - zero) * scale).astype(np.float32)


def _attributes(node: onnx.NodeProto) -> dict:
    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def _evaluate(node: onnx.NodeProto, inputs: list[np.ndarray | None]) -> np.ndarray:
    attributes = _attributes(node)
    data, parameter = inputs[0], inputs[1]
    if data is None or parameter is None:
        raise ValueError(f"cannot fold {node.op_type} without its first two inputs")
    if node.op_type == "DequantizeLinear":
        return dequantize_blocked(data, parameter, inputs[2] if len(inputs) > 2 else None,
                                  axis=int(attributes.get("axis", 1)), block_size=int(attributes.get("block_size", 0)))
    if node.op_type == "Reshape":
        shape = [int(s) for s in parameter]
        if not attributes.get("allowzero", 0):
            shape = [data.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return data.reshape(shape)
    raise ValueError(f"cannot fold {node.op_type}")


def _prelu_as_relu(node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> list[onnx.NodeProto]:
    """``PRelu(x, s)`` as ``s * x + (1 - s) * Relu(x)``, adding the two constants; the output keeps its name."""
    x, y = node.input[0], node.output[0]
    slope = constants[node.input[1]].astype(np.float32)
    constants[f"{y}/slope"], constants[f"{y}/one_minus_slope"] = slope, (1.0 - slope).astype(np.float32)
    return [helper.make_node("Relu", [x], [f"{y}/relu"], name=f"{node.name}/relu"),
            helper.make_node("Mul", [x, f"{y}/slope"], [f"{y}/slope_x"], name=f"{node.name}/slope_x"),
            helper.make_node("Mul", [f"{y}/relu", f"{y}/one_minus_slope"], [f"{y}/rest_relu"],
                             name=f"{node.name}/rest_relu"),
            helper.make_node("Add", [f"{y}/slope_x", f"{y}/rest_relu"], [y], name=f"{node.name}/sum")]


def fold_constants(model: onnx.ModelProto, *, batch_name: str = "batch") -> onnx.ModelProto:
    """Return a copy of ``model`` with weight-only DequantizeLinear/Reshape nodes folded, constant-slope PRelu
    rewritten with Relu (see the module docstring), and a dynamic batch axis.

    Parameters
    ----------
    model : onnx.ModelProto
        A graph whose first real input is the image tensor.
    batch_name : str
        Symbolic name given to axis 0 of the data input and of every output.

    Returns
    -------
    onnx.ModelProto
        Same computation; graph inputs are only the non-constant inputs; initialisers are float32 where they
        came from dequantisation; unused initialisers dropped; intermediate ``value_info`` cleared (it carried the
        old fixed batch size). Checked with ``onnx.checker``.
    """
    graph = model.graph
    constants: dict[str, np.ndarray] = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    kept: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type in FOLDABLE_OPS and all(name == "" or name in constants for name in node.input):
            inputs = [constants[name] if name else None for name in node.input]
            constants[node.output[0]] = _evaluate(node, inputs)
            continue
        if node.op_type == "PRelu" and node.input[1] in constants:
            kept.extend(_prelu_as_relu(node, constants))
            continue
        kept.append(node)
    used = {name for node in kept for name in node.input} | {output.name for output in graph.output}
    data_inputs = [graph_input for graph_input in graph.input
                   if graph_input.name not in constants and graph_input.name in used]
    for graph_input in [*data_inputs, *graph.output]:
        dims = graph_input.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_param = batch_name
    initialisers = [numpy_helper.from_array(np.ascontiguousarray(value), name)
                    for name, value in constants.items() if name in used]
    new_graph = helper.make_graph(kept, graph.name, data_inputs, list(graph.output), initialisers)
    folded = helper.make_model(new_graph, opset_imports=list(model.opset_import), ir_version=max(model.ir_version, 7),
                               producer_name="fiqa.embed.graph")
    onnx.checker.check_model(folded)
    return folded


def count_flops(model: onnx.ModelProto) -> int:
    """Multiply-accumulate FLOPs (2 per MAC) of the Conv, Gemm and MatMul nodes for batch size 1.

    Parameters
    ----------
    model : onnx.ModelProto
        A model whose shapes onnx shape inference can resolve with batch 1.

    Returns
    -------
    int
        ``sum(2 * output elements * (input channels / group) * kernel area)`` over Conv nodes plus
        ``2 * M * K * N`` over Gemm/MatMul nodes.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for graph_input in model.graph.input:
        dims = graph_input.type.tensor_type.shape.dim
        if len(dims) and dims[0].dim_param:
            dims[0].Clear()
            dims[0].dim_value = 1
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, list[int]] = {}
    for info in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        shapes[info.name] = [d.dim_value for d in info.type.tensor_type.shape.dim]
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    total = 0
    for node in inferred.graph.node:
        if node.op_type == "Conv":
            out_shape, weight = shapes[node.output[0]], shapes[node.input[1]]
            total += 2 * int(np.prod(out_shape)) * int(np.prod(weight[1:]))
        elif node.op_type in ("Gemm", "MatMul"):
            a_shape, out_shape = shapes[node.input[0]], shapes[node.output[0]]
            transposed = node.op_type == "Gemm" and _attributes(node).get("transA", 0)
            inner = a_shape[-2] if transposed else a_shape[-1]
            total += 2 * int(np.prod(out_shape)) * int(inner)
    return total
