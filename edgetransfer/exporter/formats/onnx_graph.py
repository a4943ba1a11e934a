"""Make an exported ONNX graph deployable: fixed I/O names, a static (or named dynamic) batch, nodes in
topological order, only the opset domains it uses, and the float graph simplified by onnxslim.

Each function edits an ``onnx.ModelProto`` in place (or returns a new one) and leaves the maths alone;
:func:`finish` applies the checks every written file must pass (``onnx.checker.check_model(full_check=True)``).
"""

from __future__ import annotations

from collections.abc import Iterable

from ... import _lazy
from ...errors import MissingDependencyError

BATCH_PARAM = "batch"  # the name of a dynamic batch dimension (tf2onnx writes e.g. ``unk__611``)


def rename_value(graph, old: str, new: str) -> None:
    """Rename the value ``old`` to ``new`` everywhere in ``graph`` (inputs, outputs, node edges, value_info)."""
    if old == new:
        return
    for v in [*graph.input, *graph.output, *graph.value_info]:
        if v.name == old:
            v.name = new
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]


def name_io(model, input_name: str, output_name: str) -> None:
    """Name the single graph input and output (tf2onnx keeps the Keras output name, e.g. ``dense_1``)."""
    g = model.graph
    if len(g.input) != 1 or len(g.output) != 1:
        raise ValueError(f"expected one input and one output, the graph has {len(g.input)} and {len(g.output)}")
    rename_value(g, g.input[0].name, input_name)
    rename_value(g, g.output[0].name, output_name)


def set_batch(model, dynamic: bool) -> None:
    """Batch dimension of every graph input and output: 1 (static) or the symbol ``batch``."""
    for v in [*model.graph.input, *model.graph.output]:
        dim = v.type.tensor_type.shape.dim[0]
        if dynamic:
            dim.dim_param = BATCH_PARAM
        else:
            dim.dim_value = 1
    if not dynamic:  # stale symbolic shapes from the converter would contradict the static input
        del model.graph.value_info[:]


def topological_sort(model) -> None:
    """Order the nodes so each comes after the producers of its inputs (the ONNX spec requires it;
    ``convert_float_to_float16(keep_io_types=True)`` appends the input Cast last). Kahn's algorithm,
    stable: nodes already in order keep their order."""
    g = model.graph
    known = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    pending, ordered = list(g.node), []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:
            raise ValueError(f"the graph has a cycle or a dangling input at node {pending[0].name!r}")
        ids = {id(n) for n in ready}
        for n in ready:
            ordered.append(n)
            known.update(n.output)
        pending = [n for n in pending if id(n) not in ids]
    nodes = [type(n)() for n in ordered]
    for dst, src in zip(nodes, ordered):
        dst.CopyFrom(src)
    del g.node[:]
    g.node.extend(nodes)


def _domains(nodes: Iterable) -> set[str]:
    out = set()
    for n in nodes:
        out.add("" if n.domain == "ai.onnx" else n.domain)
        for a in n.attribute:  # subgraphs (If / Loop bodies)
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                out |= _domains(sub.node)
    return out


def prune_opsets(model) -> list[str]:
    """Drop opset imports no node uses (ONNX Runtime's quantizer adds training, preview, com.microsoft,
    nchwc, experimental, aten); the default domain is kept. Returns the dropped domains."""
    used = _domains(model.graph.node) | {""}
    keep = [o for o in model.opset_import if o.domain in used or (o.domain == "ai.onnx" and "" in used)]
    dropped = [o.domain for o in model.opset_import if o not in keep]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    return dropped


def slim(model):
    """``onnxslim.slim``: folds constants and BatchNorm Mul/Add pairs into the convolutions. Returns a new
    ModelProto, or ``model`` unchanged where onnxslim is not installed."""
    try:
        onnxslim = _lazy.require("onnxslim")
    except MissingDependencyError:  # slimming is an optimisation, not a requirement
        return model
    # To a fixed point: one pass sometimes left a BatchNorm Mul unfolded (it shared a constant that
    # onnxslim had deduplicated, which pass depending on the run), so the same model came out in two
    # structures within one process; a second pass folds what the first left. Three passes at most.
    before = len(model.graph.node) + 1
    for _ in range(3):
        if len(model.graph.node) >= before:
            break
        before = len(model.graph.node)
        model = onnxslim.slim(model)
    return model


def check(path) -> None:
    """``onnx.checker.check_model(path, full_check=True)``: schema, topological order, and strict shape
    inference (raises ``onnx.checker.ValidationError`` / ``onnx.shape_inference.InferenceError``)."""
    onnx = _lazy.require("onnx")
    onnx.checker.check_model(str(path), full_check=True)
