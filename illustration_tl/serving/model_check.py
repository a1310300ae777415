"""Refuse a SavedModel before loading it unless every op is one this project emits.

A SavedModel is a program (TensorFlow's security guidance): ``tf.saved_model.load``
runs its initializers and calling any of its functions runs whatever ops it
holds, including ops that read, write or list files (``ReadFile``,
``WriteFile``, ``PrintV2`` to ``file://``, ``SaveV2``, ``MatchingFiles``,
``InitializeTableFromTextFileV2``, readers, summary writers, datasets reading
files). Denylists do not hold, so :func:`check_saved_model` reads
``saved_model.pb`` as a protobuf, without TensorFlow's loader, and walks every
node of every meta graph and of every function in its library (functions named
in attributes too, recursively: a function called only from a ``While`` body or
a dataset's ``map`` is still a function of the library). Any op outside
:data:`ALLOWED_OPS` refuses the model in one line naming the folder and the op.

:data:`ALLOWED_OPS` is data, derived from what this project's exporters write
(``export`` with an SVM of every kernel and layout or a softmax head, every
``keras.applications`` backbone of :mod:`illustration_tl.models.backbones`,
``fit`` models): ``tests/model_check_test.py`` exports each kind and checks that
their ops are inside the list and that the list holds nothing beyond them but
:data:`MARGIN_OPS`, a documented margin.

The top-level graph of a TF2 SavedModel also holds its saver (``SaveV2``,
``RestoreV2``, ...), which only TF1-style loading runs; TF2 loading restores
variables itself. Those ops (:data:`SAVER_OPS`) are allowed there and nowhere
else, and a SavedModel without an object graph (one TensorFlow would load the
TF1 way, running its init ops) or with asset files is refused.

What this guarantees: no op of a checked model can touch a file, the network
or a subprocess, because no such op is allowed. What it does not: ops that are
allowed still compute what the model's author chose (wrong answers, or large
memory and time on crafted shapes); a model from elsewhere is still only as
trustworthy as its author.
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator

from illustration_tl.errors import UserError

EXPORTED_OPS = frozenset({
    "Abs", "AddV2", "AssignVariableOp", "AvgPool", "BiasAdd", "Cast", "ConcatV2", "Const",
    "Conv2D", "DecodeImage", "DepthwiseConv2dNative", "DisableCopyOnRead", "Erfc", "Exp",
    "Fill", "FloorDiv", "GatherV2", "Greater", "GreaterEqual", "Identity", "IdentityN",
    "Less", "LogicalAnd", "MatMul", "Max", "MaxPool", "Maximum", "Mean", "Mul", "Neg", "NoOp",
    "OnesLike", "Pack", "Pad", "PadV2", "PartitionedCall", "Placeholder", "Pow", "Prod",
    "ReadVariableOp", "RealDiv", "Relu", "Relu6", "Reshape", "ReverseV2", "Rsqrt",
    "ScaleAndTranslate", "Select", "SelectV2", "Shape", "Sigmoid", "Sign", "Softmax", "Sqrt",
    "Square", "SquaredDifference", "Squeeze", "StatefulPartitionedCall", "StatelessCase",
    "StatelessWhile", "StopGradient", "StridedSlice", "Sub", "Sum", "Tanh",
    "TensorListFromTensor", "TensorListGetItem", "TensorListReserve", "TensorListSetItem",
    "TensorListStack", "TopKV2", "Transpose", "UnsortedSegmentSum", "VarHandleOp",
})
"""Every op of the graphs this project exports (``tests/model_check_test.py`` rebuilds
the list from real exports): image decoding and resizing, the CNNs, the SVM and
softmax heads, top-k, and the variable and control-flow plumbing of SavedModels."""

MARGIN_OPS: dict[str, str] = {
    "BatchMatMulV2": "KerasHub towers (DINOv2, CLIP, SigLIP): attention scores",
    "Einsum": "KerasHub towers: attention projections",
    "ExpandDims": "KerasHub CLIP and SigLIP towers: token and position embeddings",
    "Tile": "KerasHub towers: the class token broadcast over the batch",
    "VarIsInitializedOp": "exports of earlier versions (models tracked as well as their "
                          "variables): whether a variable holds a value; reads no file",
}
"""Ops allowed beyond :data:`EXPORTED_OPS`, each with why (kept short by a test): those
of ``fit`` models on KerasHub towers, which ``tests/hub_backbones_test.py`` loads
through this check (too slow to rebuild in ``tests/model_check_test.py``), and the one
op that earlier versions' exports hold and today's do not, so their models still load."""

SAVER_OPS = frozenset({"SaveV2", "RestoreV2", "MergeV2Checkpoints", "ShardedFilename",
                       "StaticRegexFullMatch", "StringJoin"})
"""The SavedModel's own saver: allowed only in functions no loaded object can call."""

ALLOWED_OPS = EXPORTED_OPS | frozenset(MARGIN_OPS)

MAX_PB_BYTES = 512 * 1024 * 1024
"""``saved_model.pb`` above this size is refused before parsing."""


class _Refused(Exception):
    """The first op (or structure) that makes a model unsafe to load, and where."""


def _attr_functions(attr_value) -> Iterator[str]:
    """Names of the functions an attribute value refers to, nested ones too."""
    if attr_value.HasField("func"):
        yield attr_value.func.name
        for nested in attr_value.func.attr.values():
            yield from _attr_functions(nested)
    if attr_value.HasField("list"):
        for f in attr_value.list.func:
            yield f.name
            for nested in f.attr.values():
                yield from _attr_functions(nested)


def _calls(nodes: Iterable, library: set[str]) -> Iterator[str]:
    """Library functions the nodes call, as an op or through an attribute."""
    for node in nodes:
        if node.op in library:
            yield node.op
        for attr in node.attr.values():
            yield from _attr_functions(attr)


def _reachable(mg) -> set[str]:
    """Functions that the object TensorFlow loads can run: those its objects name
    (``concrete_functions``: methods, signatures, resource initializers, restore
    functions) and every function they call, through ops or attributes."""
    bodies = {f.signature.name: f for f in mg.graph_def.library.function}
    todo = list(mg.object_graph_def.concrete_functions.keys())
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name not in bodies:
            raise _Refused(f"a call to function {name!r}, which the model does not define")
        todo.extend(_calls(bodies[name].node_def, set(bodies)))
    return seen


def _check_nodes(nodes: Iterable, where: str, library: set[str], allowed: frozenset) -> None:
    for node in nodes:
        if node.op not in allowed and node.op not in library:
            raise _Refused(f"op {node.op!r} ({where})")
        for attr in node.attr.values():
            for name in _attr_functions(attr):
                if name not in library:
                    raise _Refused(f"a call to function {name!r}, which the model does not "
                                   f"define ({where})")


def model_ops(saved_model) -> set[str]:
    """Every op type in a parsed ``SavedModel`` proto (meta graphs and function bodies),
    calls of the model's own functions left out."""
    out: set[str] = set()
    for mg in saved_model.meta_graphs:
        library = {f.signature.name for f in mg.graph_def.library.function}
        out.update(n.op for n in mg.graph_def.node if n.op not in library)
        for f in mg.graph_def.library.function:
            out.update(n.op for n in f.node_def if n.op not in library)
    return out


def parse(path: str):
    """The ``SavedModel`` proto of the folder ``path`` (regular file, size-capped)."""
    from tensorflow.core.protobuf import saved_model_pb2

    from illustration_tl.core import files

    pb = os.path.join(path, "saved_model.pb")
    try:
        data = files.read_regular_file(pb, MAX_PB_BYTES)
    except files.UnreadableFile as e:
        raise UserError(f"--model={path}: saved_model.pb: {e}") from None
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(data)
    except Exception:  # google.protobuf.message.DecodeError and friends
        raise UserError(f"--model={path}: saved_model.pb is not a readable SavedModel "
                        "(truncated or not a SavedModel); re-export it") from None
    return proto


def _check_proto(saved_model) -> None:
    if not saved_model.meta_graphs:
        raise _Refused("no meta graph")
    for i, mg in enumerate(saved_model.meta_graphs):
        if not mg.HasField("object_graph_def") or not mg.object_graph_def.nodes:
            raise _Refused("no TF2 object graph (TensorFlow would load it the TF1 way, "
                           "running its init ops)")
        if len(mg.asset_file_def):
            raise _Refused("asset files")
        library = {f.signature.name for f in mg.graph_def.library.function}
        reachable = _reachable(mg)
        _check_nodes(mg.graph_def.node, f"meta graph {i}", library, ALLOWED_OPS | SAVER_OPS)
        for f in mg.graph_def.library.function:
            name = f.signature.name
            _check_nodes(f.node_def, f"function {name}", library,
                         ALLOWED_OPS if name in reachable else ALLOWED_OPS | SAVER_OPS)


def check_saved_model(path: str, flag: str = "--model") -> None:
    """Raises :class:`UserError` (one line) unless every op of the SavedModel in the
    folder ``path`` is in :data:`ALLOWED_OPS`; nothing of the model is run."""
    try:
        _check_proto(parse(path))
    except _Refused as e:
        raise UserError(f"{flag}={path}: refused before loading: the SavedModel holds {e}, "
                        "which illustration-tl exports never contain (a model is a program "
                        "and could read or write files); load only models written by "
                        "illustration-tl") from None
