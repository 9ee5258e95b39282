"""Token streaming from a built Qwen3 ONNX model on onnxruntime (CPU).

``Generator`` is the small protocol the answer service codes against (a test fake
subclasses it); ``OnnxQwenGenerator`` is the real backend:

* the session memory-maps ``model.onnx.data``; MatMulNBits repacks the INT8 weights into its
  own layout at load, and nothing is ever widened to float32;
* the KV cache lives in per-layer numpy buffers bound through IOBinding as both the
  ``past`` input and the ``present`` output, so GroupQueryAttention appends in place;
* a prompt is prefilled in chunks (``prefill_chunk`` tokens, fewer when the prompt is so
  long that a chunk's attention scores would be large: ``prefill_chunk_for``); a cancel
  stops a running chunk within an operator (``Terminator``), and during decoding
  ``cancel`` is checked before every step;
* with a ``KVSessionCache`` the KV of the system-prompt prefix and of each chat's previous
  turns is reused, so only the new tokens are prefilled.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from qa.errors import GenerationError, InvalidInput, ModelNotBuilt
from qa.llm.detok import IncrementalDetokenizer
from qa.llm.kv_cache import KVBuffers, KVSessionCache
from qa.llm.kv_quant import numpy_dtype
from qa.llm.lookup import DRAFT_TOKENS, DraftLength, PromptLookup
from qa.llm.manifest import LOGITS_TO_KEEP, ModelManifest
from qa.llm.prefix_store import PrefixStore
from qa.llm.sampling import Sampler, SamplingDefaults, SamplingParams
from qa.llm.session import SessionLoader

if TYPE_CHECKING:
    import onnxruntime as ort

ChatMessage = Mapping[str, str]
Prompt = Sequence[ChatMessage] | Sequence[int]
#: "preempted" comes only from a generation worker: a batch request that gave the model to
#: a waiting question; its caller continues it (prompt + tokens so far) as a new request
FinishReason = Literal["stop", "length", "cancelled", "preempted"]

STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")


@dataclass(frozen=True)
class GenerationStats:
    prompt_tokens: int
    cached_tokens: int  # reused from a KVSessionCache snapshot
    prefilled_tokens: int  # run through the model before the first token
    generated_tokens: int
    time_to_first_token_s: float
    prefill_tokens_per_s: float
    decode_tokens_per_s: float  # after the first token
    total_s: float
    draft_tokens: int = 0  # proposed by prompt lookup and checked by the model
    accepted_draft_tokens: int = 0  # of those, kept (each saved a decode step)


@dataclass(frozen=True)
class TokenEvent:
    """New text since the previous event and the tokens that produced it.

    A token that completes no character yet (half of a CJK character) has its id carried
    by the next event. The last event has ``finish_reason`` and ``stats``; stop tokens are
    never reported.
    """

    text: str
    token_ids: tuple[int, ...] = ()
    finish_reason: FinishReason | None = None
    stats: GenerationStats | None = None


class Generator(abc.ABC):
    """What the answer service needs from an LLM backend."""

    #: longest prompt + answer the backend accepts, in tokens
    context_length: int
    #: the model for people, named under each answer (``manifest.model_label``)
    label: str = "language model"
    #: what a request samples with for each setting it leaves out (None): the model
    #: folder's generation_config.json
    sampling_defaults: SamplingDefaults = SamplingDefaults()

    @abc.abstractmethod
    def encode(self, prompt: Prompt) -> list[int]:
        """Prompt token ids: chat messages through the model's chat template, ids as given."""

    def count_tokens(self, prompt: Prompt) -> int:
        return len(self.encode(prompt))

    @abc.abstractmethod
    def stream(
        self,
        prompt: Prompt,
        *,
        max_new_tokens: int = 512,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        seed: int | None = None,
        cancel: threading.Event | None = None,
        session_cache: KVSessionCache | None = None,
        chat_id: str | None = None,
    ) -> Iterator[TokenEvent]:
        """Yield text pieces as they are generated; the last event is always the final one.

        ``temperature``, ``top_p``, ``top_k`` left at None come from ``sampling_defaults``.
        """

    def generate(self, prompt: Prompt, **kwargs: Any) -> tuple[str, TokenEvent]:
        """The whole answer and the final event (convenience for batch jobs and tests)."""
        parts: list[str] = []
        last = TokenEvent("")
        for event in self.stream(prompt, **kwargs):
            parts.append(event.text)
            last = event
        return "".join(parts), last


def speculation_off(manifest: ModelManifest, keeps_logits: bool, draft_tokens: int) -> str | None:
    """Why a model does not speculate, or None when it does. ``keeps_logits``: its graph
    has the ``logits_to_keep`` input. A draft is checked in one multi-token step, which
    must compute what single steps would, or speculation would change greedy answers."""
    if not keeps_logits:
        return "built before speculation existed (rebuild to enable)"
    if not manifest.rows_independent:
        return "layers on the dynamic kernel (a multi-token step would change them)"
    if draft_tokens <= 0:
        return "no draft tokens allowed (DOCQA_LLM_DRAFT_TOKENS=0)"
    return None


class Terminator:
    """Stops a running onnxruntime step soon after ``cancel`` is set.

    A prefill chunk is one ``run`` of the whole graph: 512 tokens of the 4B model take 6-13 s
    on two cores, and a cancel that waited for the chunk to end kept the model (and a
    generation worker) busy that long after the client left. onnxruntime checks
    ``RunOptions.terminate`` between operators, so a watcher thread that sets it when
    ``cancel`` fires ends the step within one operator (tens of milliseconds); the step
    then fails, and the caller, seeing ``cancel`` set, reports "cancelled".
    """

    POLL_S = 0.05

    def __init__(self, ort: Any, cancel: threading.Event | None) -> None:
        self.options = ort.RunOptions()
        self._cancel = cancel
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Any:
        if self._cancel is not None:
            self._thread = threading.Thread(target=self._watch, name="onnx-terminator", daemon=True)
            self._thread.start()
        return self.options

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def _watch(self) -> None:
        assert self._cancel is not None
        while not self._done.is_set():
            if self._cancel.wait(self.POLL_S):
                self.options.terminate = True
                return


class Logits:
    """The ``logits`` output buffer, bound for the last 1 (prefill, decode) or 1 + k (a
    k-token draft's check) positions; one array, a view and OrtValue per width."""

    def __init__(self, ort: Any, vocab: int, most: int) -> None:
        self._ort = ort
        self.buffer = np.zeros((1, most, vocab), np.float32)
        self._widths: dict[int, tuple[Any, npt.NDArray[np.int64]]] = {}
        self.use(1)

    def use(self, keep: int) -> None:
        if keep not in self._widths:
            # (1, keep, vocab) of a (1, most, vocab) array is contiguous: the OrtValue
            # shares its memory
            view = self.buffer[:, :keep]
            self._widths[keep] = (
                self._ort.OrtValue.ortvalue_from_numpy(view),
                np.array([keep], np.int64),
            )
        self.ortvalue, self.keep_array = self._widths[keep]

    def row(self, j: int) -> npt.NDArray[np.float32]:
        row: npt.NDArray[np.float32] = self.buffer[0, j]
        return row


#: What one prefill chunk's attention scores may take. onnxruntime's CPU
#: GroupQueryAttention sizes float32 scores for every query head x chunk token x position
#: of the KV buffer: 2 GB for 512 tokens against a 30K-token buffer. Measured on a 2-layer
#: build of the 4B shape with an int8 cache, a 30K prefill at 128 tokens a step kept
#: 0.25 GB less in the arena than at 512 and was 10% faster (the scores fit the caches).
ATTENTION_SCRATCH_BYTES = 512 << 20
#: Chunks shorter than this make the weight matmuls slow (each chunk reads every weight).
MIN_PREFILL_CHUNK = 64


def prefill_chunk_for(capacity: int, query_heads: int, chunk: int) -> int:
    """Tokens per prefill step with a KV buffer of ``capacity`` positions: ``chunk``, or
    fewer for long prompts so their attention scores fit ``ATTENTION_SCRATCH_BYTES``
    (a multiple of 64, so steps keep the matmuls' preferred shapes)."""
    rows = ATTENTION_SCRATCH_BYTES // (query_heads * max(1, capacity) * 4)
    fitted = max(MIN_PREFILL_CHUNK, rows // MIN_PREFILL_CHUNK * MIN_PREFILL_CHUNK)
    return max(1, min(chunk, fitted))


def kv_capacity(needed: int, context_length: int) -> int:
    """Positions of the KV buffer for a sequence of ``needed`` tokens: rounded up to 256,
    so prompts of similar length share allocation sizes."""
    return min(context_length, -(-needed // 256) * 256)


def _is_messages(prompt: Prompt) -> bool:
    return len(prompt) > 0 and isinstance(prompt[0], Mapping)


class OnnxQwenGenerator(Generator):
    def __init__(
        self,
        model_dir: Path,
        *,
        threads: int | None = None,
        prefill_chunk: int = 512,
        spin: bool = True,
        draft_tokens: int = DRAFT_TOKENS,
        prepack: bool = True,
        wait: bool = True,
    ) -> None:
        """``threads``: intra-op threads (default: the CPUs this process may use).
        ``spin=False`` makes idle worker threads sleep instead of busy-waiting between
        operators: a little slower, but fairer to other processes on a shared machine.
        ``draft_tokens``: most tokens prompt lookup may draft per step (0: no speculation;
        a model built before ``logits_to_keep`` existed, or with layers on the dynamic
        kernel, never speculates). ``prepack``: map the weights from this machine's
        prepacked copy, writing it at the first load (``qa.llm.session``). ``wait=False``
        returns while the session still loads on its own thread, so the caller can load
        other things meanwhile; the first use waits for it."""
        import onnxruntime as ort

        self.model_dir = Path(model_dir)
        self.manifest = ModelManifest.read(self.model_dir)
        spec = self.manifest.spec
        self.spec = spec
        self.context_length = self.manifest.context_length
        self.sampling_defaults = SamplingDefaults.from_model_dir(self.model_dir)
        self.prefill_chunk = max(1, prefill_chunk)
        self.model_key = self.manifest.key
        self.label = self.manifest.label
        self._loader = SessionLoader(self.model_dir, self.model_key, threads, spin, prepack)
        self._session: Any = None
        self._wanted_drafts = draft_tokens
        self._draft_tokens = 0
        self._keep_input = False
        #: where the session's weights came from (``qa.llm.session.OpenedSession``)
        self.session_source = "loading"
        self._copy_folder: Path | None = None
        from transformers import AutoTokenizer  # on this thread while the session loads

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelNotBuilt(f"{self.model_dir}: tokenizer does not load ({exc})") from exc
        stops = set(self.manifest.eos_token_ids)
        vocab = self.tokenizer.get_vocab()
        stops.update(vocab[t] for t in STOP_TOKENS if t in vocab)
        self.stop_ids = frozenset(stops)
        self.vocab_limit = min(len(self.tokenizer), spec.vocab_size)
        self._lock = threading.Lock()
        self._ort = ort
        if wait:
            self._loaded()

    def wait_loaded(self) -> None:
        """Wait for the session (ModelNotBuilt when the model does not load)."""
        self._loaded()

    def _loaded(self) -> Any:
        """The session, once loaded (raises ModelNotBuilt when it could not be)."""
        if self._session is None:
            session, self.session_source, self._copy_folder = self._loader.result()
            self._keep_input = any(i.name == LOGITS_TO_KEEP for i in session.get_inputs())
            off = speculation_off(self.manifest, self._keep_input, self._wanted_drafts)
            self._draft_tokens = 0 if off else self._wanted_drafts
            self._session = session
        return self._session

    @property
    def session(self) -> Any:
        return self._loaded()

    @property
    def draft_tokens(self) -> int:
        self._loaded()
        return self._draft_tokens

    @draft_tokens.setter
    def draft_tokens(self, value: int) -> None:
        self._loaded()
        self._draft_tokens = value

    # ---- prompts -------------------------------------------------------------------------

    def _template(self, messages: Sequence[ChatMessage], generation_prompt: bool) -> list[int]:
        ids = self.tokenizer.apply_chat_template(
            [dict(m) for m in messages], add_generation_prompt=generation_prompt, tokenize=True
        )
        return [int(i) for i in ids]

    def encode(self, prompt: Prompt) -> list[int]:
        if _is_messages(prompt):
            return self._template(prompt, True)  # type: ignore[arg-type]
        ids = [int(i) for i in prompt]  # type: ignore[arg-type]
        if any(not 0 <= i < self.spec.vocab_size for i in ids):
            raise InvalidInput(f"token ids must be in [0, {self.spec.vocab_size})")
        return ids

    def _system_prefix(self, prompt: Prompt, ids: list[int]) -> int:
        """Length of the system message's tokens when they prefix the prompt, else 0."""
        if not _is_messages(prompt) or prompt[0].get("role") != "system":  # type: ignore[union-attr]
            return 0
        sys_ids = self._template([prompt[0]], False)  # type: ignore[list-item]
        return len(sys_ids) if ids[: len(sys_ids)] == sys_ids and len(sys_ids) < len(ids) else 0

    def prefill_prefix(self, system: ChatMessage, cache: KVSessionCache) -> int:
        """Put the KV of the system turn ``system`` into ``cache`` now, the way the first
        request with it would (same tokens, same snapshot key), so that request finds it;
        called when a process loads the model. Returns the prefix's token count."""
        ids = self._template([system], False)
        if not ids or len(ids) >= self.context_length:
            return 0
        if cache.has_prefix(self.model_key, ids):
            return len(ids)
        store = self._prefix_store()
        snap = store.load(self.model_key, ids) if store else None
        if snap is None:
            with self._lock:
                kv, keys, values = self._new_buffers(len(ids))
                self._step(ids, kv, keys, values, Logits(self._ort, self.spec.vocab_size, 1))
                snap = kv.snapshot(self.model_key, ids)
            if store:
                store.save(snap)
        cache.put_prefix(snap)
        return len(ids)

    def _prefix_store(self) -> PrefixStore | None:
        """Where the system prompt's KV is kept between starts: beside this machine's
        prepacked copy, whose key covers what makes the KV bit-identical (None without)."""
        self._loaded()
        if self._copy_folder is None:
            return None
        s = self.spec
        dtype = np.dtype(numpy_dtype(self.manifest.kv_cache))
        return PrefixStore(self._copy_folder, s.num_layers, (s.num_kv_heads, s.head_dim), dtype)

    # ---- model steps ---------------------------------------------------------------------

    def _new_buffers(self, needed: int) -> tuple[KVBuffers, list[ort.OrtValue], list[ort.OrtValue]]:
        capacity = kv_capacity(needed, self.context_length)
        s = self.spec
        dtype = numpy_dtype(self.manifest.kv_cache)
        kv = KVBuffers(s.num_layers, s.num_kv_heads, s.head_dim, capacity, dtype)
        ov = self._ort.OrtValue.ortvalue_from_numpy  # shares the numpy memory on CPU
        return kv, [ov(k) for k in kv.keys], [ov(v) for v in kv.values]

    def _step(
        self,
        tokens: Sequence[int],
        kv: KVBuffers,
        keys: list[ort.OrtValue],
        values: list[ort.OrtValue],
        logits: Logits,
        run_options: Any = None,
    ) -> None:
        """Feed ``tokens``; ``logits`` receives the logits of the last positions it is
        ``use``-d for.
        ``run_options``: a ``Terminator``'s, which stops the step when it is cancelled."""
        total = kv.length + len(tokens)
        if total > kv.capacity:
            raise GenerationError(f"KV capacity {kv.capacity} exceeded ({total} positions)")
        # Locals, not temporaries: the binding may point at their memory until run returns.
        input_ids = np.asarray([tokens], dtype=np.int64)
        seqlens_k = np.asarray([total - 1], dtype=np.int32)
        total_len = np.asarray(total, dtype=np.int32)
        io = self.session.io_binding()
        io.bind_cpu_input("input_ids", input_ids)
        io.bind_cpu_input("seqlens_k", seqlens_k)
        io.bind_cpu_input("total_sequence_length", total_len)
        if self._keep_input:
            io.bind_cpu_input(LOGITS_TO_KEEP, logits.keep_array)
        for i, (k, v) in enumerate(zip(keys, values, strict=True)):
            io.bind_ortvalue_input(f"past_key_values.{i}.key", k)
            io.bind_ortvalue_input(f"past_key_values.{i}.value", v)
            io.bind_ortvalue_output(f"present.{i}.key", k)
            io.bind_ortvalue_output(f"present.{i}.value", v)
        io.bind_ortvalue_output("logits", logits.ortvalue)
        try:
            self.session.run_with_iobinding(io, run_options)
        except Exception as exc:  # onnxruntime's errors are untyped RuntimeErrors
            raise GenerationError(f"onnxruntime failed: {exc}") from exc
        kv.length = total

    # ---- streaming -----------------------------------------------------------------------

    def stream(
        self,
        prompt: Prompt,
        *,
        max_new_tokens: int = 512,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        seed: int | None = None,
        cancel: threading.Event | None = None,
        session_cache: KVSessionCache | None = None,
        chat_id: str | None = None,
    ) -> Iterator[TokenEvent]:
        params = self.sampling_defaults.params(max_new_tokens, temperature, top_p, top_k, seed)
        sampler = Sampler(params, self.vocab_limit)  # validates before any work
        ids = self.encode(prompt)
        if not ids:
            raise InvalidInput("empty prompt")
        if len(ids) >= self.context_length:
            raise InvalidInput(
                f"prompt of {len(ids)} tokens leaves no room in the {self.context_length}-token "
                "context"
            )
        sys_len = self._system_prefix(prompt, ids)
        return self._stream(ids, sys_len, params, sampler, cancel, session_cache, chat_id)

    def _stream(
        self,
        ids: list[int],
        sys_len: int,
        params: SamplingParams,
        sampler: Sampler,
        cancel: threading.Event | None,
        cache: KVSessionCache | None,
        chat_id: str | None,
    ) -> Iterator[TokenEvent]:
        with self._lock:  # one sequence at a time per process
            start = time.perf_counter()
            max_new = min(params.max_new_tokens, self.context_length - len(ids))
            kv, keys, values = self._new_buffers(len(ids) + max_new)
            logits = Logits(self._ort, self.spec.vocab_size, 1 + self.draft_tokens)

            cached = 0
            if cache is not None:
                snap, cached = cache.lookup(self.model_key, ids, chat_id)
                if snap is not None and cached:
                    kv.load(snap, cached)
            # Chunk boundaries: the system prefix end (to snapshot it), then prefill_chunk.
            bounds = []
            save_prefix = (
                cache is not None
                and sys_len > cached
                and not cache.has_prefix(self.model_key, ids[:sys_len])
            )
            if save_prefix:
                bounds.append(sys_len)
            pos = cached
            step = prefill_chunk_for(kv.capacity, self.spec.num_heads, self.prefill_chunk)
            cuts = sorted({*bounds, *range(pos + step, len(ids), step)})
            cancelled = False
            with Terminator(self._ort, cancel) as run_options:
                for end in [*cuts, len(ids)]:
                    if end <= pos:
                        continue
                    if cancel is not None and cancel.is_set():
                        cancelled = True
                        break
                    try:
                        self._step(ids[pos:end], kv, keys, values, logits, run_options)
                    except GenerationError:
                        if cancel is not None and cancel.is_set():  # stopped mid-chunk
                            cancelled = True
                            break
                        raise
                    pos = end
                    if save_prefix and end == sys_len and cache is not None:
                        cache.put_prefix(kv.snapshot(self.model_key, ids[:sys_len]))
            if cancelled:
                if cache is not None and chat_id is not None and pos > cached:
                    # Keep the part already prefilled: a generation that gave way to a
                    # question continues from here instead of prefilling it again.
                    cache.put_chat(chat_id, kv.snapshot(self.model_key, ids[:pos]))
                yield self._final("", (), "cancelled", ids, cached, 0, start, None, None)
                return
            prefill_done = time.perf_counter()

            detok = IncrementalDetokenizer(self.tokenizer)
            lookup = PromptLookup(ids) if self.draft_tokens else None
            length = DraftLength(self.draft_tokens)
            generated: list[int] = []
            pending: list[int] = []  # tokens whose text is not complete yet
            first_token_at: float | None = None
            reason: FinishReason | None = None
            drafted = accepted = 0
            # Tokens chosen and not yet reported, in order; all but the last are already
            # fed (accepted draft tokens), the last one is fed by the next step.
            chosen = [sampler(logits.row(0))]
            while True:
                for token in chosen:
                    if first_token_at is None:
                        first_token_at = time.perf_counter()
                    if token in self.stop_ids:
                        reason = "stop"
                        break
                    generated.append(token)
                    pending.append(token)
                    if lookup is not None:
                        lookup.extend((token,))
                    piece = detok.push(token)
                    if piece:
                        yield TokenEvent(piece, tuple(pending))
                        pending.clear()
                    if len(generated) >= max_new:
                        reason = "length"
                        break
                    if cancel is not None and cancel.is_set():
                        reason = "cancelled"
                        break
                if reason is not None:
                    break
                token = chosen[-1]
                room = min(length.next(), max_new - len(generated) - 1, kv.capacity - kv.length - 1)
                draft = lookup.draft(room) if lookup is not None and room > 0 else []
                logits.use(1 + len(draft))
                base = kv.length
                self._step([token, *draft], kv, keys, values, logits)
                chosen = []
                for j, guess in enumerate(draft):
                    ok, picked = sampler.verify(logits.row(j), guess)
                    chosen.append(picked)
                    if not ok:
                        break
                else:  # every guess kept (or none made): the next token is free
                    chosen.append(sampler(logits.row(len(draft))))
                drafted += len(draft)
                accepted += len(chosen) - 1
                length.record(len(draft), len(chosen) - 1)
                # positions past the kept guesses hold a rejected guess's KV; the next step
                # overwrites them (attention reads only up to the length it is given)
                kv.length = base + len(chosen)

            if cache is not None and chat_id is not None:
                # KV exists for every token fed: the prompt and all generated but the last.
                fed = ids + generated[: kv.length - len(ids)]
                cache.put_chat(chat_id, kv.snapshot(self.model_key, fed))
            yield self._final(
                detok.flush(),
                tuple(pending),
                reason or "length",
                ids,
                cached,
                len(generated),
                start,
                prefill_done,
                first_token_at,
                drafted,
                accepted,
            )

    def _final(
        self,
        text: str,
        token_ids: tuple[int, ...],
        reason: FinishReason,
        ids: list[int],
        cached: int,
        n_generated: int,
        start: float,
        prefill_done: float | None,
        first_token_at: float | None,
        drafted: int = 0,
        accepted: int = 0,
    ) -> TokenEvent:
        now = time.perf_counter()
        prefilled = len(ids) - cached if prefill_done is not None else 0
        prefill_s = (prefill_done - start) if prefill_done is not None else 0.0
        decode_s = now - first_token_at if first_token_at is not None else 0.0
        stats = GenerationStats(
            prompt_tokens=len(ids),
            cached_tokens=cached,
            prefilled_tokens=prefilled,
            generated_tokens=n_generated,
            time_to_first_token_s=(first_token_at - start) if first_token_at else 0.0,
            prefill_tokens_per_s=prefilled / prefill_s if prefill_s > 0 else 0.0,
            decode_tokens_per_s=(n_generated - 1) / decode_s
            if n_generated > 1 and decode_s > 0
            else 0.0,
            total_s=now - start,
            draft_tokens=drafted,
            accepted_draft_tokens=accepted,
        )
        return TokenEvent(text, token_ids, reason, stats)
