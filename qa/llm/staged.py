"""Run a built graph one stage at a time, so checking it needs one layer's memory, not the model's.

The build's accuracy check must run the *built* INT8 graph (the kernels that will serve),
yet ``docqa model build`` must keep a small footprint on the full 4B model. Loading the
whole graph into onnxruntime would cost what serving costs (about 5 GB: the mapped weights
plus the kernels' prepacked copies). So the graph is cut at its layer boundaries into
stages (the embedding, each decoder layer, the final norm and lm_head, the last in
vocabulary blocks: ``head_blocks``); each stage is a small ONNX file beside ``model.onnx``
that points into the same external data file, is loaded alone, fed every prefill window
in order (with its own KV cache), and freed before the next. The ops, kernels and
prepacking are those of the whole graph, so the logits are the same
(``tests/qa/llm/test_accuracy.py`` compares them); the residual stream after each layer
comes for free, which is what the check's diagnosis needs.

Stage boundaries follow ``graph.py``'s names: ``embeds``; layer i reads layer i-1's
``l{i-1}.down`` and ``l{i-1}.res_mlp`` (layer 0 reads ``embeds``) and writes its own; the
head reads the last layer's pair and writes ``logits``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import onnx
from onnx import ModelProto, TensorProto, helper

from qa.errors import ModelBuildError
from qa.llm.external_data import external_span, external_tensor
from qa.llm.manifest import LOGITS_TO_KEEP, MODEL_FILE
from qa.llm.spec import Qwen3Spec

F32 = npt.NDArray[np.float32]
_KV_TYPES: dict[str, type[np.generic]] = {"tensor(float)": np.float32, "tensor(int8)": np.int8}
T = TypeVar("T")
STAGE_FILE = ".stage.onnx"  # written next to model.onnx (same external data), then deleted
#: the lm_head runs in this many vocabulary blocks, so its prepacked weights (the largest
#: matrix) are resident one block at a time; whole, its stage was the check's peak on the
#: full 4B model (1.59 GB RSS, against 0.2-0.3 GB per layer stage)
HEAD_BLOCKS = 8


@dataclass(frozen=True)
class StagedRun:
    logits: F32  # (P, vocab): the last position of each window
    states: F32  # (layers, P, hidden): the residual stream after each layer, at the probes


def _layer_io(i: int) -> tuple[list[str], list[str]]:
    inputs = ["embeds"] if i == 0 else [f"l{i - 1}.down", f"l{i - 1}.res_mlp"]
    return inputs, [f"l{i}.down", f"l{i}.res_mlp", f"present.{i}.key", f"present.{i}.value"]


def cut(model: ModelProto, inputs: list[str], outputs: list[str]) -> ModelProto:
    """The part of ``model`` that computes ``outputs`` from ``inputs`` (plus whatever graph
    inputs and initializers it reads). Initializers keep their external-data references."""
    g = model.graph
    producer = {out: node for node in g.node for out in node.output if out}
    inits = {t.name: t for t in g.initializer}
    graph_inputs = {v.name: v for v in g.input}
    wanted: set[int] = set()
    needed_inits: set[str] = set()
    needed_inputs: list[str] = []
    stack, seen = list(outputs), set(inputs)
    while stack:
        name = stack.pop()
        if name in seen or not name:
            continue
        seen.add(name)
        if name in inits:
            needed_inits.add(name)
        elif name in graph_inputs:
            needed_inputs.append(name)
        elif name in producer:
            node = producer[name]
            wanted.add(id(node))
            stack.extend(node.input)
        else:
            raise ModelBuildError(f"the built graph has no tensor {name!r} to cut at")
    f32 = TensorProto.FLOAT
    # a cut at a graph output keeps its declared element type (present.* are int8 in an
    # int8-KV build), not its shape (the head's vocabulary blocks are narrower); anything
    # else cut at is an activation, float32
    kinds = {v.name: v.type.tensor_type.elem_type for v in g.output}
    graph = helper.make_graph(
        [n for n in g.node if id(n) in wanted],
        g.name,
        [helper.make_tensor_value_info(n, f32, None) for n in inputs]
        + [graph_inputs[n] for n in sorted(needed_inputs)],
        [helper.make_tensor_value_info(n, kinds.get(n, f32), None) for n in outputs],
        initializer=[t for t in g.initializer if t.name in needed_inits],
    )
    part = helper.make_model(graph, opset_imports=model.opset_import, producer_name="docqa")
    part.ir_version = model.ir_version
    return part


def _rows(t: TensorProto, start: int, stop: int, n: int) -> TensorProto:
    """Rows ``[start, stop)`` of the external tensor ``t``, whose leading extent is ``n``
    rows of equal size (MatMulNBits' B, scales, zero points and bias all are), under the
    same name and still pointing into the data file, at those rows' bytes only."""
    if t.data_location != TensorProto.EXTERNAL:
        raise ModelBuildError(f"lm_head tensor {t.name!r} is not in the external data file")
    location, offset, length = external_span(t)
    row = length // n
    dims = (int(t.dims[0]) // n * (stop - start), *t.dims[1:])
    return external_tensor(
        t.name, t.data_type, dims, location, offset + start * row, (stop - start) * row
    )


def head_blocks(head: ModelProto, blocks: int) -> list[ModelProto]:
    """``head`` (final norm + lm_head) split into up to ``blocks`` parts by vocabulary rows,
    each computing ``logits`` for its rows only; concatenated along the last axis they are
    the whole head's logits. Why: onnxruntime prepacks the lm_head weights (151,936 x
    2,560 on the 4B model) into a second copy when the session loads; a block prepacks
    only its share, which keeps the check's peak near a layer's. A head that is not a
    MatMulNBits (the fp32 build) is returned whole."""
    node = next(n for n in head.graph.node if "logits" in n.output)
    if node.op_type != "MatMulNBits" or blocks < 2:
        return [head]
    n = next(a.i for a in node.attribute if a.name == "N")
    sliced = {name for j, name in enumerate(node.input) if name and j in (1, 2, 3, 5)}
    inits = {t.name: t for t in head.graph.initializer}
    step = -(-n // blocks)
    parts: list[ModelProto] = []
    for start in range(0, n, step):
        stop = min(n, start + step)
        part = ModelProto()
        part.CopyFrom(head)
        block = next(x for x in part.graph.node if "logits" in x.output)
        next(a for a in block.attribute if a.name == "N").i = stop - start
        for t in part.graph.initializer:
            if t.name in sliced:
                t.CopyFrom(_rows(inits[t.name], start, stop, n))
        parts.append(part)
    return parts


def session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = len(os.sched_getaffinity(0))
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelBuildError(f"{path}: the built model does not load ({exc})") from exc


def _in_stage(model_dir: Path, part: ModelProto, work: Callable[[Any], T]) -> T:
    """``work(session)`` on ``part`` loaded alone; the session is gone when this returns
    (nothing outside holds it), so two stages' weights are never resident together.

    Reference counting frees it: an onnxruntime session is in no reference cycle, so no
    ``gc.collect()`` is needed (a full collection took ~0.25 s a stage in a process holding
    torch, 12+ stages a check)."""
    path = model_dir / STAGE_FILE
    onnx.save_model(part, str(path))
    try:
        return work(session(path))
    finally:
        path.unlink(missing_ok=True)


def _windows(probes: list[int]) -> list[tuple[int, int]]:
    starts = [0, *(p + 1 for p in probes[:-1])]
    return [(s, e + 1) for s, e in zip(starts, probes, strict=True)]


def _kv_feeds(
    spec: Qwen3Spec, i: int, past: tuple[F32, F32], past_len: int, n: int
) -> dict[str, Any]:
    return {
        "seqlens_k": np.array([past_len + n - 1], np.int32),
        "total_sequence_length": np.array(past_len + n, np.int32),
        f"past_key_values.{i}.key": past[0],
        f"past_key_values.{i}.value": past[1],
    }


def run_staged(model_dir: Path, spec: Qwen3Spec, ids: list[int], probes: list[int]) -> StagedRun:
    """Prefill ``ids`` in windows ending at ``probes``, the way the service does, stage by stage."""
    model = onnx.load(str(model_dir / MODEL_FILE), load_external_data=False)
    windows = _windows(probes)

    def embed(sess: Any) -> list[list[F32]]:
        return [sess.run(None, {"input_ids": np.array([ids[s:e]], np.int64)}) for s, e in windows]

    x = _in_stage(model_dir, cut(model, [], ["embeds"]), embed)
    states: list[F32] = []
    for i in range(spec.num_layers):
        names, outs = _layer_io(i)

        def layer(
            sess: Any, i: int = i, names: list[str] = names, x: list[list[F32]] = x
        ) -> list[list[F32]]:
            kv_shape = (1, spec.num_kv_heads, 0, spec.head_dim)
            # the cache's element type is the graph's (int8 for kv_cache="int8")
            types = {a.name: a.type for a in sess.get_inputs()}
            dtype = _KV_TYPES[types[f"past_key_values.{i}.key"]]
            past = (np.zeros(kv_shape, dtype), np.zeros(kv_shape, dtype))
            out: list[list[F32]] = []
            for (s, e), arrays in zip(windows, x, strict=True):
                feeds = {
                    **dict(zip(names, arrays, strict=True)),
                    **_kv_feeds(spec, i, past, s, e - s),
                }
                down, res, key, value = sess.run(None, feeds)
                past = (key, value)
                out.append([down, res])
            return out

        x = _in_stage(model_dir, cut(model, names, outs), layer)
        states.append(np.stack([np.asarray(d[0, -1] + r[0, -1], np.float32) for d, r in x]))
    last = _layer_io(spec.num_layers)[0]

    def head(sess: Any) -> list[F32]:
        keep = {LOGITS_TO_KEEP: np.array([1], np.int64)}
        return [
            np.asarray(
                sess.run(None, {**dict(zip(last, a, strict=True)), **keep})[0][0, -1], np.float32
            )
            for a in x
        ]

    parts = head_blocks(cut(model, last, ["logits"]), HEAD_BLOCKS)
    columns = [_in_stage(model_dir, part, head) for part in parts]
    rows = [np.concatenate([c[p] for c in columns]) for p in range(len(windows))]
    return StagedRun(logits=np.stack(rows), states=np.stack(states))
