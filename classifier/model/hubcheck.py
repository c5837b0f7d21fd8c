"""What a hub: SavedModel may run: a graph with side-effecting ops is refused before it is loaded.

A SavedModel is a graph its author chose. TensorFlow runs part of it while loading (resource
initialisers) and the rest on every call, so inside a model folder (`hub/`) it is code chosen by
whoever made the folder. Before `tf.saved_model.load` touches it, `check_ops` reads its
`saved_model.pb` as the loader does (`tf.__internal__.saved_model.parse_saved_model`, which runs
nothing) and walks everything loading or calling it can run, in every MetaGraph:

- every concrete function the object graph restores: `__call__`, the signatures, resource
  creators, initialisers and destroyers;
- the main graph's nodes (a TF1 Hub module runs its init ops from there);
- every function those call, through the FunctionDef library, recursively: a node whose op is a
  library function, and every function-valued attribute (PartitionedCall, If/While/Case branches,
  tf.data's map functions).

An op in `DENIED_OPS`, or whose name matches one of `DENIED_PATTERNS`, refuses the folder with one
UsageError naming the op and what it does. The one exception is the SavedModel's own checkpoint
saver (its `saver_def`: the save and restore ops TensorFlow reads the variables with, which the
loader drives itself), where `CHECKPOINT_OPS` are allowed and everything else denied stays denied.

It is a denylist of what reaches outside the process's memory in TensorFlow 2.21's op registry:
files, Python, the console, other processes and machines. A graph that only computes passes; what
it computes (garbage, or too much) stays its author's business. `--trust-hub-handle` skips the
check for folders the user trusts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Iterator

from .._tf import tf
from ..errors import UsageError, first_line

# The ops TensorFlow saves and restores variables with: allowed in the SavedModel's own saver, nowhere else.
CHECKPOINT_OPS = frozenset(
    {"Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice", "MergeV2Checkpoints", "DTensorRestoreV2"}
)
# Op names refused anywhere else in a bundled SavedModel, by what they do.
DENIED_OPS: dict[str, frozenset[str]] = {
    "file I/O": frozenset(
        {
            "ReadFile",
            "WriteFile",
            "MatchingFiles",
            "FileSystemSetConfiguration",
            "ImmutableConst",  # maps a file of its choosing into memory
            "InitializeTableFromTextFile",
            "InitializeTableFromTextFileV2",
            "LoadAndRemapMatrix",  # reads a checkpoint file
            "GenerateVocabRemapping",  # reads vocabulary files
            "DecodeProtoV2",  # descriptor_source may name a file
            "EncodeProto",
            "DumpTensor",
            "CalibrationStatisticsSaver",
            "DatasetToTFRecord",
            "ExperimentalDatasetToTFRecord",
            "DistributedSave",
        }
    ),
    "checkpoint files": CHECKPOINT_OPS,
    "Python code": frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"}),  # tf.py_function, tf.numpy_function
    "printing": frozenset({"Print", "PrintV2"}),  # PrintV2's output_stream may be any file:// path
    "other processes": frozenset({"RemoteCall"}),
}
DENIED_PATTERNS: dict[str, re.Pattern] = {
    "a tf.data pipeline (files, sockets)": re.compile(  # every dataset, and every op that makes or drives an iterator
        r"Dataset(V\d)?$|^(Anonymous|AnonymousMultiDevice|MultiDevice|OneShot|Make|Delete|Serialize|Deserialize)?"
        r"Iterator"
    ),
    "a file reader": re.compile(r"^Reader|Reader(V\d)?$"),
    "summary files": re.compile(r"^Write\w*Summary$|SummaryWriter$"),
    "the debugger (file:// and grpc:// URLs)": re.compile(r"^Debug"),
    "other processes and machines": re.compile(r"^(Collective|_?Nccl|Rpc|DeleteRpc|_?Send|_?Recv|_Host(Send|Recv))"),
}


def denied(op: str, allowed: frozenset[str] = frozenset()) -> str | None:
    """What `op` does that a bundled SavedModel may not (a DENIED_* group's name), or None; `allowed` exempts."""
    if op in allowed:
        return None
    for reason, names in DENIED_OPS.items():
        if op in names:
            return reason
    return next((reason for reason, pattern in DENIED_PATTERNS.items() if pattern.search(op)), None)


def check_ops(folder: Path, what: str, advice: str) -> None:
    """Refuse the SavedModel in `folder` if loading or calling it could run a denied op: a UsageError naming `what`
    (the model folder, or the --backbone option), the ops, and ending with `advice` (what the user can do)."""
    try:
        saved_model = tf.__internal__.saved_model.parse_saved_model(str(folder))
    except Exception as error:  # missing, truncated, not a SavedModel: TensorFlow raises several kinds
        raise UsageError(f"{what}: cannot read its SavedModel ({first_line(error)})") from None
    found = sorted({f"{op} ({reason})" for meta_graph in saved_model.meta_graphs for op, reason in _denied(meta_graph)})
    if found:
        raise UsageError(
            f"{what}: its hub SavedModel uses {', '.join(found[:3])}{' ...' if len(found) > 3 else ''}; refused, since "
            f"loading or calling it would run them ({advice})"
        )


def _denied(meta_graph) -> Iterator[tuple[str, str]]:
    """(op, reason) for every denied op loading or calling this MetaGraph can run (see the module docstring)."""
    library = {function.signature.name: function for function in meta_graph.graph_def.library.function}
    nodes = list(meta_graph.graph_def.node)
    saver = _saver_nodes(meta_graph.saver_def, nodes)
    restored = [library[name].node_def for name in meta_graph.object_graph_def.concrete_functions if name in library]
    everything_else = [[node for node in nodes if node.name not in saver], *restored]
    yield from _walk(everything_else, library, frozenset())
    yield from _walk([[node for node in nodes if node.name in saver]], library, CHECKPOINT_OPS)


def _walk(bodies: Iterable[Iterable], library: dict, allowed: frozenset[str]) -> Iterator[tuple[str, str]]:
    """Denied ops in these node lists and in every library function they reach."""
    pending, seen = list(bodies), set()
    while pending:
        for node in pending.pop():
            reason = denied(node.op, allowed)
            if reason:
                yield node.op, reason
            for name in _called(node):
                if name in library and name not in seen:
                    seen.add(name)
                    pending.append(library[name].node_def)


def _called(node) -> Iterator[str]:
    """Names of the functions a node may call: its op (a library function called directly) and function attrs."""
    yield node.op
    for value in node.attr.values():
        if value.HasField("func"):
            yield value.func.name
        yield from (function.name for function in value.list.func)


def _saver_nodes(saver_def, nodes: list) -> set[str]:
    """The main-graph nodes the checkpoint saver's save and restore ops are built from (backwards from both)."""
    by_name = {node.name: node for node in nodes}
    pending = [_node_name(saver_def.save_tensor_name), _node_name(saver_def.restore_op_name)]
    found: set[str] = set()
    while pending:
        name = pending.pop()
        if name in by_name and name not in found:
            found.add(name)
            pending.extend(_node_name(source) for source in by_name[name].input)
    return found


def _node_name(tensor: str) -> str:
    """ "^a" (a control input), "a:0" or "a" -> "a"."""
    return tensor.lstrip("^").split(":")[0]
