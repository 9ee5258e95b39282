"""LLM speed and memory: our ONNX INT8 backend vs PyTorch bf16, same models, same run.

    python -m tests.bench.bench_llm [--layers 2 4] [--decode-tokens 16] [--skip-torch]
    python -m tests.bench.bench_llm --full [--work DIR] [--kernel dynamic|blockwise]
    python -m tests.bench.bench_llm --long 30000 [--layers 1 2] [--kv both|fp32|int8]
        [--kernel blockwise|dynamic] [--work DIR]

``--full``: the whole Qwen3-4B-Instruct-2507 from ../shared/models (config, tokenizer, chat
template, generation config) with random bf16 weights under the real tensor names, streamed
to disk (8 GB), built by ``docqa model build`` (peak RSS reported), then ``docqa ask`` end to
end in English and Chinese: time to first token, decode tok/s, total.

Random-weight models with the REAL Qwen3-4B folder (../shared/models/qwen3-4b-instruct-2507:
its config, tokenizer, chat template and generation config; hidden 2560, 32/8 heads,
head_dim 128, intermediate 9728, vocab 151,936) but only a few layers are written to
safetensors layer by layer (one bf16 shard per layer: the generator never holds more than
one layer), built with
``qa.llm.build`` (both INT8 kernels), then measured:

* wall-clock speed with 2 threads, the layer counts interleaved in one process, best of
  ``REPEATS`` rounds (the machine is shared; other people's load only slows a run down);
* CPU seconds per token on ONE thread, which barely moves with other load, divided by the
  thread count as the uncontended projection;
* peak RSS (``ru_maxrss``) and anonymous RSS of load + a 2,048-token prefill, alone in a
  fresh child process.

Figures at 36 layers are extrapolated linearly from the two layer counts (time per token =
fixed + per_layer * layers; likewise RSS). Speed does not depend on weight values.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from qa.llm.session import PREPACKED_DIR

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TARGET_LAYERS = 36
ROWS_PER_BLOCK = 4096  # fp32 scratch of a block: at most 4096 x 9728 x 4 = 160 MB
THREADS = 2
REPEATS = 3
KERNELS = ("blockwise", "dynamic")


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


# ---- children ------------------------------------------------------------------------------


def _write_shard(path: Path, shapes: dict[str, tuple[int, ...]], fill: Any) -> None:
    """One bf16 safetensors file written tensor by tensor, rows in blocks.

    ``safetensors.save_file`` wants every tensor in memory at once (the 778 MB embedding
    and then its serialized copy); this writes the header from the shapes alone, then each
    tensor's rows as ``fill(name, start, rows)`` produces them, so the scratch stays at
    one block whatever the model size.
    """
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in shapes.items():
        size = 2 * int(np.prod(shape))
        header[name] = {
            "dtype": "BF16",
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    with path.open("wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for name, shape in shapes.items():
            for start in range(0, shape[0], ROWS_PER_BLOCK):
                rows = min(ROWS_PER_BLOCK, shape[0] - start)
                f.write(fill(name, start, rows).tobytes())


def make_model(out: Path, layers: int) -> dict[str, Any]:
    """The real folder's files + random bf16 weights with the real tensor names and shapes,
    one safetensors shard per layer (and one for the rest), streamed to disk."""
    import torch

    from tests.qa.llm.tiny_qwen import copy_real_files, real_config

    out.mkdir(parents=True, exist_ok=True)
    # the real folder's tokenizer, template and generation config, unchanged
    copy_real_files(out)
    # the real config.json (262,144 positions; the build serves DEFAULT_CONTEXT of them)
    cfg = {**real_config(), "num_hidden_layers": layers, "max_window_layers": layers}
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    gen = torch.Generator().manual_seed(0)
    h, inter, d = cfg["hidden_size"], cfg["intermediate_size"], cfg["head_dim"]
    q, kv = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d
    shapes: dict[str, tuple[int, ...]] = {}

    def fill(name: str, start: int, rows: int) -> np.ndarray:  # type: ignore[type-arg]
        shape = (rows, *shapes[name][1:])
        if name.endswith("norm.weight"):
            block = torch.ones(shape, dtype=torch.bfloat16)
        else:
            block = (torch.randn(shape, generator=gen) * 0.02).to(torch.bfloat16)
        return block.view(torch.int16).numpy()

    weight_map: dict[str, str] = {}
    shards = layers + 1

    def write(index: int, tensors: dict[str, tuple[int, ...]]) -> None:
        name = f"model-{index + 1:05d}-of-{shards:05d}.safetensors"
        shapes.clear()
        shapes.update(tensors)
        _write_shard(out / name, tensors, fill)
        weight_map.update(dict.fromkeys(tensors, name))

    write(0, {"model.embed_tokens.weight": (cfg["vocab_size"], h), "model.norm.weight": (h,)})
    for i in range(layers):
        p = f"model.layers.{i}"
        write(
            i + 1,
            {
                f"{p}.input_layernorm.weight": (h,),
                f"{p}.post_attention_layernorm.weight": (h,),
                f"{p}.self_attn.q_proj.weight": (q, h),
                f"{p}.self_attn.k_proj.weight": (kv, h),
                f"{p}.self_attn.v_proj.weight": (kv, h),
                f"{p}.self_attn.o_proj.weight": (h, q),
                f"{p}.self_attn.q_norm.weight": (d,),
                f"{p}.self_attn.k_norm.weight": (d,),
                f"{p}.mlp.gate_proj.weight": (inter, h),
                f"{p}.mlp.up_proj.weight": (inter, h),
                f"{p}.mlp.down_proj.weight": (h, inter),
            },
        )
    index = {"metadata": {}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index))
    return {"peak_rss_gb": peak_rss_gb()}


def build(hf: Path, out: Path, kernel: str) -> dict[str, Any]:
    from qa.llm.build import build_model

    started = time.perf_counter()
    report = build_model(hf, out, precision="int8", int8_kernel=kernel)  # type: ignore[arg-type]
    return {
        "seconds": time.perf_counter() - started,
        "peak_rss_gb": peak_rss_gb(),
        "model_gb": report.model_bytes / 1e9,
    }


def _prompt(n: int, seed: int) -> list[int]:
    return [int(x) for x in np.random.default_rng(seed).integers(3, 500, n)]


def _status_gb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024**2
    return 0.0


class _Ort:
    def __init__(self, model: Path, threads: int = THREADS) -> None:
        from qa.llm.generate import OnnxQwenGenerator

        # One thread for CPU-time figures: no spinning, so CPU time is work, not waiting.
        self.g = OnnxQwenGenerator(model, threads=threads, spin=threads > 1)
        self.g.stop_ids = frozenset()  # random weights: never stop early, time every token
        self.g.generate(_prompt(16, 0), max_new_tokens=2, temperature=0)  # warm-up

    def prefill(self, n: int) -> float:
        _, last = self.g.generate(_prompt(n, n), max_new_tokens=1, temperature=0)
        assert last.stats is not None
        return last.stats.prefill_tokens_per_s

    def decode(self, n: int) -> float:
        _, last = self.g.generate(_prompt(512, 7), max_new_tokens=n + 1, temperature=0)
        assert last.stats is not None
        return last.stats.decode_tokens_per_s

    def ttft(self) -> tuple[float, float]:
        """Time to first token: a 1,500-token prompt cold, then a follow-up turn that adds
        60 tokens to the same chat (its KV reused from the cache)."""
        from qa.llm.kv_cache import KVSessionCache

        cache = KVSessionCache(max_bytes=4 << 30)
        first = _prompt(1500, 11)
        events = list(
            self.g.stream(
                first, max_new_tokens=8, temperature=0, session_cache=cache, chat_id="bench"
            )
        )
        cold = events[-1].stats
        answer = [t for e in events for t in e.token_ids]
        follow = first + answer + _prompt(60, 12)
        _, last = self.g.generate(
            follow, max_new_tokens=1, temperature=0, session_cache=cache, chat_id="bench"
        )
        assert cold is not None and last.stats is not None
        return cold.time_to_first_token_s, last.stats.time_to_first_token_s


class _Torch:
    cpu_per_token = 0.0

    def __init__(self, model: Path, threads: int = THREADS) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(threads)
        self.torch = torch
        self.m = AutoModelForCausalLM.from_pretrained(model, dtype=torch.bfloat16).eval()
        self.prefill(16)  # warm-up

    def prefill(self, n: int) -> float:
        # logits for the last position only, as our graph does (fair, and 1.2 GB less RAM)
        ids = self.torch.tensor([_prompt(n, n)])
        with self.torch.inference_mode():
            t = time.perf_counter()
            self.m(ids, use_cache=True, logits_to_keep=1)
            return n / (time.perf_counter() - t)

    def decode(self, n: int) -> float:
        with self.torch.inference_mode():
            out = self.m(self.torch.tensor([_prompt(512, 7)]), use_cache=True, logits_to_keep=1)
            past, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
            t, cpu = time.perf_counter(), time.process_time()
            for _ in range(n):
                out = self.m(tok, past_key_values=past, use_cache=True)
                past, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
            self.cpu_per_token = (time.process_time() - cpu) / n
            return n / (time.perf_counter() - t)


def run_speed(backend: str, models: list[Path], decode_tokens: int) -> dict[str, Any]:
    """Speed of every model in ONE process, measured round-robin, best of REPEATS rounds.

    The machine is shared: interleaving the layer counts exposes them to the same
    background load (the 36-layer estimate comes from their difference), and a burst of
    someone else's work only ever makes a run slower, so the best round is the figure.
    """
    runners = [(_Ort if backend == "ort" else _Torch)(m) for m in models]
    res: dict[str, dict[str, float]] = {str(m): {} for m in models}
    for _ in range(REPEATS):
        for model, r in zip(models, runners, strict=True):
            row = res[str(model)]
            for n in (512, 2048):
                row[f"prefill_{n}"] = max(row.get(f"prefill_{n}", 0.0), r.prefill(n))
            row["decode"] = max(row.get("decode", 0.0), r.decode(decode_tokens))
            if isinstance(r, _Ort):
                cold, follow = r.ttft()
                row["ttft_cold_s"] = min(row.get("ttft_cold_s", 1e9), cold)
                row["ttft_follow_s"] = min(row.get("ttft_follow_s", 1e9), follow)
    return res


def run_cpu(backend: str, models: list[Path], decode_tokens: int) -> dict[str, Any]:
    """CPU seconds per token on ONE thread (min over REPEATS rounds).

    CPU time only counts while the process runs, so unlike wall time it barely moves with
    other people's load on a shared machine; divided by the thread count it projects the
    uncontended speed, assuming the near-linear 2-thread scaling of the GEMM kernels.
    """
    runners = [(_Ort if backend == "ort" else _Torch)(m, threads=1) for m in models]
    res: dict[str, dict[str, float]] = {str(m): {} for m in models}
    for _ in range(REPEATS):
        for model, r in zip(models, runners, strict=True):
            row = res[str(model)]
            t = time.process_time()
            r.prefill(512)
            row["cpu_prefill_512"] = min(
                row.get("cpu_prefill_512", 1e9), (time.process_time() - t) / 512
            )
            if isinstance(r, _Torch):
                r.decode(decode_tokens)
                spent = r.cpu_per_token
            else:
                t = time.process_time()
                _ort_decode_only(r, decode_tokens)
                spent = (time.process_time() - t) / decode_tokens
            row["cpu_decode"] = min(row.get("cpu_decode", 1e9), spent)
    return res


def _ort_decode_only(r: Any, n: int) -> None:
    """Decode steps only (the cached 512-token prompt is reused, so nothing is prefilled)."""
    from qa.llm.kv_cache import KVSessionCache

    if not hasattr(r, "cache"):
        r.cache = KVSessionCache(max_bytes=4 << 30)
        r.g.generate(
            _prompt(513, 7), max_new_tokens=1, temperature=0, session_cache=r.cache, chat_id="cpu"
        )
    # the chat's snapshot covers the prompt: 1 token is prefilled, then n - 1 decode steps
    r.g.generate(
        _prompt(513, 7), max_new_tokens=n, temperature=0, session_cache=r.cache, chat_id="cpu"
    )


def run_rss(backend: str, model: Path) -> dict[str, Any]:
    """Peak RSS of load + a 2,048-token prefill + a few decode steps, alone in a process."""
    started = time.perf_counter()
    r = _Ort(model) if backend == "ort" else _Torch(model)
    res = {"load_s": time.perf_counter() - started, "load_rss_gb": peak_rss_gb()}
    r.prefill(2048)
    if isinstance(r, _Ort):
        # RssAnon is what the process really owns; the rest of RSS is clean pages of the
        # memory-mapped model file, which the kernel can drop at any time.
        res["anon_gb"] = _status_gb("RssAnon")
    res["peak_rss_gb"] = peak_rss_gb()
    return res


# ---- parent --------------------------------------------------------------------------------


def child(mode: str, *args: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "tests.bench.bench_llm", "--child", mode, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"{mode} child failed:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def extrapolate(points: dict[int, float], layers: int = TARGET_LAYERS) -> float:
    """Linear in the layer count through the two measured points."""
    (l1, y1), (l2, y2) = sorted(points.items())[:1] + sorted(points.items())[-1:]
    slope = (y2 - y1) / (l2 - l1)
    return y1 + slope * (layers - l1)


def per_token_extrapolation(rates: dict[int, float]) -> float:
    """tok/s at 36 layers: extrapolate seconds per token, not the rate itself."""
    seconds = extrapolate({n: 1.0 / r for n, r in rates.items()})
    return 1.0 / seconds if seconds > 0 else float("nan")  # noise made the slope negative


# ---- the full model, end to end through `docqa ask` ---------------------------------------

REPO = Path(__file__).resolve().parents[2]
FULL_QUESTIONS = ("What is the hotel limit in London?", "员工每年有多少天带薪年假？")
#: a full source budget: the issue's "-k 16" London question
FULL_K = 16


def _docqa(data: Path, *args: str, env: dict[str, str] | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "cli.main", "--data-dir", str(data), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, check=False)
    if proc.returncode:
        raise RuntimeError(f"docqa {args[0]} failed:\n{proc.stderr[-4000:]}")
    return proc.stdout.splitlines()


def ask_end_to_end(
    data: Path,
    model: Path,
    question: str,
    max_tokens: int,
    k: int | None = None,
    focus: float | None = None,
) -> dict[str, Any]:
    """``docqa ask --json`` as a user runs it: a new process that loads the embedder and the
    model, retrieves, prefills, streams. Wall times are from the process start; the done
    event carries the service's own time to first token and decode speed. ``ready_s``: from
    the process start to the sources event less the retrieval, i.e. until the service (the
    embedder, the model's session and its system prompt's KV) was built."""
    env = {**os.environ, "DOCQA_MODEL_DIR": str(model)}
    if focus is not None:
        env["DOCQA_FOCUS_RATIO"] = str(focus)
    cmd = [sys.executable, "-m", "cli.main", "--data-dir", str(data), "ask", question, "--json"]
    cmd += ["--max-tokens", str(max_tokens), *(["-k", str(k)] if k else [])]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
    assert proc.stdout is not None
    events: list[dict[str, Any]] = []
    first_token_s = sources_s = None
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["type"] == "sources" and sources_s is None:
            sources_s = time.perf_counter() - started
        if events[-1]["type"] == "token" and first_token_s is None:
            first_token_s = time.perf_counter() - started
    # wait4: this process's own peak RSS (it includes the memory-mapped model file's pages)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"docqa ask failed with {os.waitstatus_to_exitcode(status)}")
    done = events[-1]
    if done["type"] != "done":
        raise RuntimeError(f"docqa ask ended with {done}")
    assert sources_s is not None
    return {
        "question": question,
        "k": k,
        "ready_s": sources_s - done["retrieval_ms"] / 1000,
        "process_first_token_s": first_token_s,
        "process_total_s": time.perf_counter() - started,
        "peak_rss_gb": usage.ru_maxrss / 1024**2,
        **{f: done.get(f) for f in ("mode", "finish_reason", "retrieval_ms")},
        **{f: done.get(f) for f in ("time_to_first_token_ms", "tokens_per_s", "prompt_tokens")},
        **{f: done.get(f) for f in ("completion_tokens", "draft_acceptance")},
    }


def run_speculation(data: Path, model: Path, tokens: int, rounds: int = 3) -> dict[str, Any]:
    """Decode speed with prompt-lookup speculation on and off, in one process, on the
    service's own prompt for the London question (the same generator ``docqa ask`` uses;
    the chat's KV cache makes every run after the first skip the prefill). Greedy, so both
    modes must produce the same tokens. Random weights accept almost no drafts: this
    measures what speculation costs when it does not help."""
    from qa.answering.answer_service import AskOptions
    from qa.answering.assembly import build_answer_service
    from qa.llm.generate import Logits, OnnxQwenGenerator
    from qa.llm.kv_cache import KVSessionCache
    from qa.settings import Settings
    from qa.store.catalog import get_collection

    service = build_answer_service(Settings(data_dir=data, model_dir=model))
    gen = service.generator
    assert isinstance(gen, OnnxQwenGenerator)
    with service.db.session() as s:
        coll = get_collection(s, "handbook").id
    question = FULL_QUESTIONS[0]
    options = AskOptions(temperature=0.0, max_tokens=tokens)
    result = service.retriever.retrieve(question, [coll], k=options.k)
    plan, _ = service.plan_prompt(question, result.passages, options)
    cache = KVSessionCache()
    drafts = gen.draft_tokens
    rates: dict[str, list[float]] = {"on": [], "off": []}
    texts: dict[str, str] = {}
    stats: dict[str, Any] = {}
    for _ in range(rounds + 1):  # the first round pays the prefill: not counted
        for mode in ("on", "off"):
            gen.draft_tokens = drafts if mode == "on" else 0
            text, last = gen.generate(
                plan.messages,
                max_new_tokens=tokens,
                temperature=0,
                session_cache=cache,
                chat_id="bench",
            )
            assert last.stats is not None
            rates[mode].append(last.stats.decode_tokens_per_s)
            texts[mode], stats[mode] = text, last.stats
    on, off = max(rates["on"][1:]), max(rates["off"][1:])
    # What a wrong draft costs: a step of 1 + k tokens against a step of one, at the same
    # place (after the prompt); the worst case (every draft rejected) decodes at off / ratio.
    width: dict[int, float] = {}
    ids = gen.encode(plan.messages)
    for n in (1, 2, 3, 1 + drafts, 1, 2, 3, 1 + drafts):
        kv, keys, values = gen._new_buffers(len(ids) + 8)
        snap, cached = cache.lookup(gen.model_key, ids, "bench")
        assert snap is not None
        kv.load(snap, cached)
        logits = Logits(gen._ort, gen.spec.vocab_size, 1 + drafts)
        logits.use(n)
        t0 = time.perf_counter()
        gen._step(ids[cached:] + [ids[-1]] * (n - 1), kv, keys, values, logits)
        width[n] = min(width.get(n, 1e9), time.perf_counter() - t0)
    return {
        "step_1_s": width[1],
        "step_widths_s": width,
        "step_k_s": width[1 + drafts],
        "draft_tokens": drafts,
        "prompt_tokens": stats["on"].prompt_tokens,
        "tokens": stats["on"].generated_tokens,
        "same_text": texts["on"] == texts["off"],
        "on_tok_s": on,
        "off_tok_s": off,
        "drafted": stats["on"].draft_tokens,
        "accepted": stats["on"].accepted_draft_tokens,
    }


def build_kv(hf: Path, out: Path, kv_cache: str, kernel: str = "blockwise") -> dict[str, Any]:
    """A build with the given KV cache type: blockwise (what random weights end as), or
    the dynamic kernel (the default for real weights) with its accuracy check skipped,
    because random weights fail it and memory and speed do not depend on the values."""
    from qa.llm.build import build_model

    report = build_model(
        hf,
        out,
        precision="int8",
        kv_cache=kv_cache,  # type: ignore[arg-type]
        int8_kernel=kernel,  # type: ignore[arg-type]
        check_accuracy=kernel != "dynamic",
    )
    return {"model_gb": report.model_bytes / 1e9, "kv_bytes": report.manifest.kv_bytes_per_token}


def run_long(model: Path, tokens: int) -> dict[str, Any]:
    """A ``tokens``-long prompt prefilled and one token answered, alone in a fresh process:
    load time, prefill time and the memory it took (anonymous and file-backed apart)."""
    from qa.llm.generate import OnnxQwenGenerator

    started = time.perf_counter()
    g = OnnxQwenGenerator(model, threads=THREADS)
    g.wait_loaded()
    loaded = time.perf_counter() - started
    anon_loaded = _status_gb("RssAnon")
    if tokens == 0:  # a start that only loads: the first one writes the prepacked copy
        return {"load_s": loaded, "weights": g.session_source, "peak_rss_gb": peak_rss_gb()}
    cpu = time.process_time()
    _, last = g.generate(_prompt(tokens, 3), max_new_tokens=1, temperature=0)
    assert last.stats is not None
    return {
        # CPU time too: hours of prefill share the machine with other work
        "prefill_cpu_s": time.process_time() - cpu,
        "weights": g.session_source,
        "load_s": loaded,
        "prefill_s": last.stats.time_to_first_token_s,
        "anon_loaded_gb": anon_loaded,
        "anon_gb": _status_gb("RssAnon"),
        "file_gb": _status_gb("RssFile"),
        "peak_rss_gb": peak_rss_gb(),
    }


def main_long(work: Path, tokens: int, layers: list[int], kv: str, kernel: str) -> None:
    """Peak memory of a ``tokens``-token prompt with a float32 and/or an int8 KV cache, at
    two layer counts of the real shape, extrapolated to 36 layers like the speed figures;
    or measured, when one of the layer counts is 36 (``--layers 36 36``: hours of prefill)."""
    kinds = ("fp32", "int8") if kv == "both" else (kv,)
    rows: dict[str, dict[int, dict[str, Any]]] = {kind: {} for kind in kinds}
    layers = sorted(set(layers))
    for n in layers:
        hf = work / f"hf{n}"
        if not (hf / "model.safetensors.index.json").is_file():
            child("make", str(hf), str(n))
        for kind in rows:
            built = work / f"onnx{n}-kv-{kind}-{kernel}"
            b = child("build-kv", str(hf), str(built), kind, kernel)
            # As served: a start after the first maps this machine's prepacked copy, which
            # the first start writes while packing the weights on its heap (the worst case
            # for memory, but once per build and machine: `docqa model prepack`).
            first = child("long", str(built), "0")
            print(f"  {n} layers, {kind} KV, first start: {json.dumps(first)}", flush=True)
            rows[kind][n] = {**b, **child("long", str(built), str(tokens))}
            shutil.rmtree(built)
            print(f"  {n} layers, {kind} KV: {json.dumps(rows[kind][n])}", flush=True)
    print(f"\n== a {tokens:,}-token prompt, {kernel} INT8 weights, Qwen3-4B shape (GB)")
    cols = ("anon_loaded_gb", "anon_gb", "file_gb", "peak_rss_gb", "prefill_s", "prefill_cpu_s")
    print(f"{'KV cache':<10}{'layers':>7}" + "".join(f"{c:>16}" for c in cols) + "  weights")
    for kind, by_layers in rows.items():
        for n in layers:
            r = by_layers[n]
            figures = "".join(f"{r[c]:>16.2f}" for c in cols)
            print(f"{kind:<10}{n:>7}{figures}  {r['weights']}")
        if len(layers) > 1 and TARGET_LAYERS not in layers:
            est = [extrapolate({n: by_layers[n][c] for n in layers}) for c in cols]
            print(f"{kind:<10}{'36 est':>7}" + "".join(f"{v:>16.2f}" for v in est))
        kv36 = by_layers[layers[0]]["kv_bytes"] / layers[0] * TARGET_LAYERS * tokens / 1e9
        print(f"{'':<10}{'':>7}  of which the KV cache at 36 layers: {kv36:.2f} GB")


def cli_build(hf: Path, out: Path, kernel: str) -> dict[str, Any]:
    """`docqa model build --from hf --out out [--kernel k]`, in this (fresh) process."""
    from cli.main import main as docqa

    started = time.perf_counter()
    args = ["model", "build", "--from", str(hf), "--out", str(out)]
    docqa([*args, *(["--kernel", kernel] if kernel != "default" else [])], standalone_mode=False)
    return {
        "seconds": time.perf_counter() - started,
        "peak_rss_gb": peak_rss_gb(),
        "model_gb": sum(f.stat().st_size for f in out.iterdir()) / 1e9,
    }


def main_full(work: Path, max_tokens: int, kernel: str) -> None:
    """The whole 36-layer Qwen3-4B-Instruct-2507 from the real folder plus random weights
    (8 GB of bf16 safetensors, about 4.5 GB built): make, `docqa model build`,
    `docqa model info`, then `docqa ask` end to end in English and Chinese."""
    hf, built, data = work / "hf-full", work / f"onnx-full-{kernel}", work / "data"
    layers = int(real_config_layers())
    if not (hf / "model.safetensors.index.json").is_file():
        made = child("make", str(hf), str(layers))
        print(f"  random weights written, peak RSS {made['peak_rss_gb']:.2f} GB", flush=True)
    if not (built / "docqa_model.json").is_file():
        b = child("cli-build", str(hf), str(built), kernel)
        print(
            f"  docqa model build (kernel {kernel}, {layers} layers): {b['seconds']:.0f} s, "
            f"peak RSS {b['peak_rss_gb']:.2f} GB, model {b['model_gb']:.2f} GB",
            flush=True,
        )
    env = {**os.environ, "DOCQA_MODEL_DIR": str(built)}
    for line in _docqa(data, "model", "info", env=env):
        print(f"  {line}")
    if not (data / "docqa.db").exists():
        _docqa(data, "ingest", str(REPO / "samples" / "docs"), "-c", "handbook")
    # The first start after a build packs the weights and writes this machine's prepacked
    # copy (qa.llm.session); every later start maps it.
    shutil.rmtree(built / PREPACKED_DIR, ignore_errors=True)
    r = ask_end_to_end(data, built, FULL_QUESTIONS[0], max_tokens)
    print(
        f"  first start after the build (writes the prepacked copy): ready {r['ready_s']:.1f} s,"
        f" first token {r['process_first_token_s']:.1f} s, peak RSS {r['peak_rss_gb']:.2f} GB;"
        f" the copy: {sum(f.stat().st_size for f in (built / PREPACKED_DIR).rglob('*')) / 1e9:.2f}"
        " GB",
        flush=True,
    )
    sp = child("speculation", str(data), str(built), "--ask-tokens", str(max_tokens))
    print(
        f"\n== prompt-lookup speculation, greedy, {sp['prompt_tokens']}-token prompt, "
        f"{sp['tokens']} tokens: decode {sp['on_tok_s']:.2f} tok/s on vs "
        f"{sp['off_tok_s']:.2f} off (ratio {sp['on_tok_s'] / sp['off_tok_s']:.3f}); drafted "
        f"{sp['drafted']}, accepted {sp['accepted']}; same text: {sp['same_text']}; a step of "
        f"1+{sp['draft_tokens']} tokens takes {sp['step_k_s'] * 1000:.0f} ms vs "
        f"{sp['step_1_s'] * 1000:.0f} ms for one ({sp['step_k_s'] / sp['step_1_s']:.2f}x: "
        "the worst case, every draft rejected)",
        flush=True,
    )
    print(f"\n== docqa ask end to end ({max_tokens} tokens at most; random weights)")
    # The default k in English and Chinese, then the full source budget (-k 16): as served
    # (passages far below the best one left out of the prompt) and with all 16 passages.
    runs = [(q, None, None) for q in FULL_QUESTIONS]
    runs += [(FULL_QUESTIONS[0], FULL_K, None), (FULL_QUESTIONS[0], FULL_K, 0.0)]
    for question, k, focus in runs:
        for run in ("cold", "warm"):  # warm: the model file is in the page cache
            r = ask_end_to_end(data, built, question, max_tokens, k, focus)
            acceptance = r["draft_acceptance"]
            setting = f"k={k or 'default'}" + ("" if focus is None else f", focus {focus}")
            print(
                f"  {run:<4} {question[:36]:<36} {setting:<16} ready {r['ready_s']:.1f} s,"
                f" first token {r['process_first_token_s']:.1f} s after start (service TTFT"
                f" {r['time_to_first_token_ms'] / 1000:.2f} s for {r['prompt_tokens']} prompt"
                f" tokens), decode {r['tokens_per_s']:.2f} tok/s, draft acceptance"
                f" {'-' if acceptance is None else f'{acceptance:.2f}'},"
                f" {r['completion_tokens']} tokens, total {r['process_total_s']:.1f} s,"
                f" peak RSS {r['peak_rss_gb']:.2f} GB",
                flush=True,
            )


def real_config_layers() -> int:
    from tests.qa.llm.tiny_qwen import real_config

    return int(real_config()["num_hidden_layers"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--layers", type=int, nargs=2, default=[2, 4])
    ap.add_argument("--decode-tokens", type=int, default=16)
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--work", type=Path, default=None, help="keep models here")
    ap.add_argument(
        "--full",
        action="store_true",
        help="build the whole real-shape model (8 GB + 4.5 GB of disk) and time `docqa ask`",
    )
    ap.add_argument("--ask-tokens", type=int, default=64, help="answer length with --full")
    ap.add_argument(
        "--kernel",
        default="default",
        help="with --full: docqa model build --kernel (default: its own); with --long:"
        " blockwise (default) or dynamic",
    )
    ap.add_argument(
        "--long",
        type=int,
        default=None,
        metavar="TOKENS",
        help="peak memory of a TOKENS-long prompt, float32 vs int8 KV cache, at --layers",
    )
    ap.add_argument(
        "--kv",
        choices=("both", "fp32", "int8"),
        default="both",
        help="with --long: the KV cache types to measure",
    )
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        paths = [Path(p) for p in args.paths]
        fn = {
            "make": lambda: make_model(paths[0], int(args.paths[1])),
            "build": lambda: build(paths[0], paths[1], args.paths[2]),
            "cli-build": lambda: cli_build(paths[0], paths[1], args.paths[2]),
            "build-kv": lambda: build_kv(paths[0], paths[1], *args.paths[2:]),
            "long": lambda: run_long(paths[0], int(args.paths[1])),
            "speculation": lambda: run_speculation(paths[0], paths[1], args.ask_tokens),
            "ort-speed": lambda: run_speed("ort", paths, args.decode_tokens),
            "torch-speed": lambda: run_speed("torch", paths, args.decode_tokens),
            "ort-rss": lambda: run_rss("ort", paths[0]),
            "ort-cpu": lambda: run_cpu("ort", paths, args.decode_tokens),
            "torch-cpu": lambda: run_cpu("torch", paths, args.decode_tokens),
            "torch-rss": lambda: run_rss("torch", paths[0]),
        }[args.child]
        print(json.dumps(fn()))
        return

    from tests.bench.run import machine

    print(f"machine: {machine()}, {THREADS} threads")
    work_ctx = tempfile.TemporaryDirectory(prefix="bench_llm_") if args.work is None else None
    work = Path(work_ctx.name) if work_ctx else args.work
    if args.full or args.long:
        try:
            if args.full:
                main_full(work, args.ask_tokens, args.kernel)
            else:
                kernel = "blockwise" if args.kernel == "default" else args.kernel
                main_long(work, args.long, args.layers, args.kv, kernel)
        finally:
            if work_ctx:
                work_ctx.cleanup()
        return
    results: dict[str, dict[int, dict[str, Any]]] = {"torch": {}}
    dt = ["--decode-tokens", str(args.decode_tokens)]
    try:
        hf = {n: work / f"hf{n}" for n in args.layers}
        for n, folder in hf.items():
            if not (folder / "model.safetensors.index.json").is_file():
                child("make", str(folder), str(n))
        for kernel in KERNELS:
            builds, rows = {}, {}
            built = {n: work / f"onnx{n}-{kernel}" for n in args.layers}
            for n in args.layers:
                builds[n] = child("build", str(hf[n]), str(built[n]), kernel)
                rows[n] = child("ort-rss", str(built[n]))
            speed = child("ort-speed", *map(str, built.values()), *dt)
            cpu = child("ort-cpu", *map(str, built.values()), *dt)
            for n in args.layers:
                rows[n].update(speed[str(built[n])], **cpu[str(built[n])])
                shutil.rmtree(built[n])
            results[f"build:{kernel}"], results[f"ort:{kernel}"] = builds, rows
            print(f"  {kernel}: {json.dumps(rows)}", flush=True)
        if not args.skip_torch:
            speed = child("torch-speed", *map(str, hf.values()), *dt)
            cpu = child("torch-cpu", *map(str, hf.values()), *dt)
            for n in args.layers:
                rss = child("torch-rss", str(hf[n]))
                results["torch"][n] = {**rss, **speed[str(hf[n])], **cpu[str(hf[n])]}
    finally:
        if work_ctx:
            work_ctx.cleanup()
    report(results, args.layers)


def report(results: dict[str, dict[int, dict[str, Any]]], layer_counts: list[int]) -> None:
    cols = ("prefill_512", "prefill_2048", "decode", "peak_rss_gb")
    head = f"{'backend':<22}{'layers':>7}" + "".join(f"{c:>14}" for c in cols)
    print(
        "\n== Qwen3-4B shape, random weights, wall clock (tok/s; RSS in GB with a 2,048-token"
        " prompt)\n   on a shared machine the 36-layer wall estimates are only as good as the"
        " load was steady; prefer the CPU-time projection below"
    )
    print(head)
    backends = [(f"ort:{k}", f"ONNX INT8 {k}") for k in KERNELS] + [("torch", "PyTorch bf16")]
    for backend, label in backends:
        rows = results.get(backend)
        if not rows:
            continue
        for layers in layer_counts:
            r = rows[layers]
            print(f"{label:<22}{layers:>7}" + "".join(f"{r[c]:>14.2f}" for c in cols))
        ext = [per_token_extrapolation({n: rows[n][c] for n in layer_counts}) for c in cols[:3]]
        ext.append(extrapolate({n: rows[n]["peak_rss_gb"] for n in layer_counts}))
        print(f"{label:<22}{'36 est':>7}" + "".join(f"{v:>14.2f}" for v in ext))
    print(
        f"\n== projected from 1-thread CPU time (robust to other load), {THREADS} threads, "
        "36 layers (tok/s)"
    )
    for backend, label in backends:
        rows = results.get(backend)
        if not rows:
            continue
        pre = extrapolate({n: rows[n]["cpu_prefill_512"] for n in layer_counts}) / THREADS
        dec = extrapolate({n: rows[n]["cpu_decode"] for n in layer_counts}) / THREADS
        per_layer = (rows[layer_counts[-1]]["cpu_decode"] - rows[layer_counts[0]]["cpu_decode"]) / (
            layer_counts[-1] - layer_counts[0]
        )
        print(
            f"  {label:<22} prefill_512 {1 / pre:7.1f}   decode {1 / dec:6.2f}"
            f"   (decode CPU ms/layer {per_layer * 1000:.2f})"
        )
    print("\n== ONNX details at 36 layers (est): anonymous RSS (owned, not file cache), load,")
    print("   time to first token (wall) for a 1,500-token prompt cold / as a follow-up (+60)")
    for kernel in KERNELS:
        rows = results[f"ort:{kernel}"]

        def est(key: str, rows: dict[int, dict[str, Any]] = rows) -> float:
            return extrapolate({n: rows[n][key] for n in layer_counts})

        print(
            f"  {kernel}: anon {est('anon_gb'):.2f} GB, load {est('load_s'):.0f} s, "
            f"TTFT cold {est('ttft_cold_s'):.1f} s, follow-up {est('ttft_follow_s'):.2f} s"
        )
    for kernel in KERNELS:
        b = results[f"build:{kernel}"]
        print(f"\n== build (streaming, INT8 {kernel})")
        for layers in layer_counts:
            print(
                f"  {layers} layers: {b[layers]['seconds']:.1f} s, peak RSS "
                f"{b[layers]['peak_rss_gb']:.2f} GB, model {b[layers]['model_gb']:.2f} GB"
            )
        print(
            f"  36 layers est: {extrapolate({n: b[n]['seconds'] for n in layer_counts}):.0f} s, "
            f"peak RSS {extrapolate({n: b[n]['peak_rss_gb'] for n in layer_counts}):.2f} GB, "
            f"model {extrapolate({n: b[n]['model_gb'] for n in layer_counts}):.2f} GB"
        )
    if results["torch"]:
        t = results["torch"]
        print("\n== ratios ONNX / PyTorch at 36 layers (est)")
        for kernel in KERNELS:
            o = results[f"ort:{kernel}"]
            ratios = []
            for c in cols[:3]:
                ro = per_token_extrapolation({n: o[n][c] for n in layer_counts})
                rt = per_token_extrapolation({n: t[n][c] for n in layer_counts})
                ratios.append(f"{c} {ro / rt:.2f}x")
            print(f"  {kernel}: {', '.join(ratios)}")


if __name__ == "__main__":
    main()
