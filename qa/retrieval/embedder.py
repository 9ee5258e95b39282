"""Sentence embeddings for chunks and questions.

``Embedder`` is the small protocol the rest of docqa codes against (tests subclass it for
fakes). ``SentenceTransformerEmbedder`` is the real one, with two backends:

* ``torch``: the sentence-transformers model as shipped (float32).
* ``onnx-int8``: the same model exported to ONNX and dynamically quantized to INT8 with the
  preset that fits this CPU. The export is written once into ``cache_dir/<model-slug>/`` and
  reused by every later load (and every process) on the machine.

Both backends return float32, L2-normalized vectors, so a dot product is the cosine.
INT8 vectors are close to the float ones (mean cosine ~0.99 on SciFact abstracts) but, since
dynamic quantization scales activations per batch, a text's vector also moves slightly
(cosine >= 0.98) with the other texts in its batch: compare vectors with a tolerance.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from qa.cpu import cpu_flags, flags_of
from qa.errors import ConfigError, EmbeddingError
from qa.retrieval.tokens import Tokenizer, load_tokenizer, packaged_model_dir
from qa.settings import PACKAGED_EMBED_MODEL, Settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

Backend = Literal["torch", "onnx-int8"]
QuantPreset = Literal["avx512_vnni", "avx512", "avx2", "arm64"]

_PACKAGED_PREFIX = "packaged:"

# Models trained with asymmetric inputs lose a lot of retrieval quality when the prefix is
# missing, so the right one is applied by default. Matched against the lower-cased model
# name (folder name) in order; first match wins. ``(query_prefix, passage_prefix)``.
_PREFIX_TABLE: tuple[tuple[re.Pattern[str], tuple[str, str]], ...] = (
    # e5 / multilingual-e5 (the *-instruct variants want a task instruction instead)
    (re.compile(r"^(multilingual-)?e5-(?!.*instruct)"), ("query: ", "passage: ")),
    # bge v1.5 English: an instruction on the query only
    (
        re.compile(r"^bge-(small|base|large)-en"),
        ("Represent this sentence for searching relevant passages: ", ""),
    ),
    # bge Chinese
    (re.compile(r"^bge-(small|base|large)-zh"), ("为这个句子生成表示以用于检索相关文章：", "")),
    (re.compile(r"^nomic-embed-text"), ("search_query: ", "search_document: ")),
)


def default_prefixes(model_name: str) -> tuple[str, str]:
    """``(query_prefix, passage_prefix)`` for a model name; empty strings when none is known."""
    name = model_name.lower()
    for pattern, prefixes in _PREFIX_TABLE:
        if pattern.search(name):
            return prefixes
    return "", ""


class Embedder(abc.ABC):
    """What docqa needs from an embedding model.

    Subclasses set ``model_id``, ``dim`` and ``max_tokens`` and implement ``_encode`` (raw
    texts in, normalized float32 rows out) and ``tokenizer``; prefixes, the empty case and
    shape checks live here so every backend (and every test fake) behaves the same.
    """

    model_id: str
    dim: int
    #: the model's ``max_seq_length``: longer inputs are truncated by the model
    max_tokens: int
    query_prefix: str = ""
    passage_prefix: str = ""

    @property
    @abc.abstractmethod
    def tokenizer(self) -> Tokenizer:
        """The model's own tokenizer (chunks are sized in its tokens)."""

    @abc.abstractmethod
    def _encode(self, texts: list[str]) -> np.ndarray:
        """Embed already-prefixed texts: float32, shape ``(len(texts), dim)``, L2-normalized."""

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            # A lone string is a Sequence[str] too; embedding it char by char is never meant.
            raise TypeError("embed_passages takes a sequence of texts, not one string")
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self._encode([self.passage_prefix + t for t in texts])
        return self._checked(vecs, len(texts))

    def embed_query(self, text: str) -> np.ndarray:
        vecs = self._encode([self.query_prefix + text])
        row: np.ndarray = self._checked(vecs, 1)[0]
        return row

    def _checked(self, vecs: np.ndarray, n: int) -> np.ndarray:
        if vecs.shape != (n, self.dim):
            raise EmbeddingError(
                f"{self.model_id}: expected embeddings of shape {(n, self.dim)}, got {vecs.shape}"
            )
        return np.ascontiguousarray(vecs, dtype=np.float32)


# --------------------------------------------------------------------------------------
# ONNX INT8 export


def cpu_quant_preset(cpuinfo: str | None = None) -> QuantPreset:
    """The ONNX Runtime dynamic-quantization preset that fits this CPU.

    Reads the ``flags`` line of ``/proc/cpuinfo`` (ARM kernels print ``Features`` instead,
    which is why "no x86 flag found" means arm64).
    """
    flags = cpu_flags() if cpuinfo is None else flags_of(cpuinfo)
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "arm64"


def _onnx_file_name(preset: QuantPreset) -> str:
    # The name sentence-transformers' own export_dynamic_quantized_onnx_model would give it,
    # so a cache folder is also loadable by hand with model_kwargs={"file_name": ...}.
    return f"model_qint8_{preset}.onnx"


# Weights do not belong in the ONNX cache folder: the graph carries its own copy.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".ckpt")
_SKIPPED_DIRS = ("onnx", "openvino", ".git")


def _copy_model_files(src: Path, dst: Path) -> None:
    """Copy the non-weight files of a model folder (configs, tokenizer, pooling).

    Content only, not permission bits: the source may be a read-only package folder, and a
    read-only copy could not receive the exported graph.
    """
    dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if rel.parts[0] in _SKIPPED_DIRS or not path.is_file():
            continue
        if path.suffix in _WEIGHT_SUFFIXES:
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dst / rel)


def _fingerprint(model_dir: Path) -> str:
    """A short digest that changes when the model folder's content changes.

    Guards against a stale export when an admin replaces a model folder in place under the
    same name. Small files (configs, tokenizer) are hashed whole; large ones (weights) by
    size plus their first MiB, which for safetensors includes the header with every
    tensor's name, shape and offsets, so re-reading gigabytes on each start is avoided.
    """
    h = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(model_dir).as_posix()
        if rel.split("/")[0] in _SKIPPED_DIRS:
            continue
        size = path.stat().st_size
        h.update(f"{rel}\0{size}\0".encode())
        with path.open("rb") as f:
            h.update(f.read(1 << 20))
    return h.hexdigest()[:12]


def model_slug(model_dir: Path, name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"
    return f"{safe}-{_fingerprint(model_dir)}"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Inter-process lock so two workers starting together export once, not twice.

    Only an optimisation: correctness comes from the atomic rename in ``ensure_onnx_int8``.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def export_onnx_int8(model_dir: Path, out_dir: Path, preset: QuantPreset) -> Path:
    """Export ``model_dir`` to ONNX and quantize it to dynamic INT8 into ``out_dir/onnx/``.

    ``out_dir`` must already hold the non-weight files of the model (configs, tokenizer,
    pooling) so that sentence-transformers can load it with ``backend="onnx"``. Returns the
    quantized file. Works in a scratch folder under ``out_dir`` and removes it.
    """
    try:
        import torch
        from optimum.exporters.onnx import main_export
        from optimum.onnxruntime import ORTQuantizer
        from optimum.onnxruntime.configuration import AutoQuantizationConfig
    except ImportError as exc:
        raise ConfigError(
            "the onnx-int8 embedding backend needs optimum-onnx and onnxruntime "
            "(pip install optimum-onnx onnxruntime)"
        ) from exc

    fp32_dir = out_dir / ".fp32"
    try:
        # These warnings are known, harmless consequences of optimum's TorchScript-based
        # exporter; the int8-vs-torch similarity test guards the result. catch_warnings is
        # process-global in 3.11, acceptable because this runs once per model per cache.
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore",
                message=r".*legacy TorchScript-based ONNX export",
                category=DeprecationWarning,
            )
            warnings.filterwarnings(
                "ignore",
                message=r"The feature will be removed",
                category=DeprecationWarning,
                module=r"torch\.onnx\.",
            )
            tracer_warning: type[Warning] = torch.jit.TracerWarning  # type: ignore[attr-defined]
            warnings.filterwarnings("ignore", category=tracer_warning)
            # library_name="transformers": export the bare encoder (last_hidden_state) as
            # sentence-transformers' ONNX backend expects; pooling and normalization stay
            # in the sentence-transformers modules.
            main_export(
                model_name_or_path=str(model_dir),
                output=fp32_dir,
                task="feature-extraction",
                library_name="transformers",
                local_files_only=True,
                do_validation=False,
                no_post_process=True,
                device="cpu",
            )
        quantizer = ORTQuantizer.from_pretrained(fp32_dir, file_name="model.onnx")
        qconfig = getattr(AutoQuantizationConfig, preset)(is_static=False)
        quantizer.quantize(qconfig, save_dir=out_dir / "onnx", file_suffix=f"qint8_{preset}")
    finally:
        shutil.rmtree(fp32_dir, ignore_errors=True)
    result = out_dir / "onnx" / _onnx_file_name(preset)
    if not result.is_file():
        raise EmbeddingError(f"ONNX quantization did not produce {result}")
    return result


def ensure_onnx_int8(
    model_dir: Path, name: str, cache_dir: Path, preset: QuantPreset | None = None
) -> tuple[Path, str]:
    """Make sure ``cache_dir/<slug>/onnx/model_qint8_<preset>.onnx`` exists; export if not.

    Returns ``(folder, file name relative to it)``. The export is built in a temporary
    folder next to the target and moved into place with one rename, so a reader (or a
    second process racing us) sees either nothing or a complete folder, never a half one.
    """
    preset = preset or cpu_quant_preset()
    target = cache_dir / model_slug(model_dir, name)
    rel_file = f"onnx/{_onnx_file_name(preset)}"
    if (target / rel_file).is_file():
        return target, rel_file
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with _file_lock(cache_dir / f".{target.name}.lock"):
            if (target / rel_file).is_file():  # another process finished while we waited
                return target, rel_file
            log.info("exporting %s to ONNX int8 (%s) into %s", name, preset, target)
            with tempfile.TemporaryDirectory(dir=cache_dir, prefix=f".{target.name}.") as tmp:
                staging = Path(tmp) / target.name
                _copy_model_files(model_dir, staging)
                built = export_onnx_int8(model_dir, staging, preset)
                try:
                    # Atomic on POSIX; fails if the target exists and is not empty.
                    os.rename(staging, target)
                except OSError:
                    if not target.is_dir():
                        raise
                    # The folder exists from another preset (a cache shared between CPUs):
                    # add our file to it, again with an atomic rename.
                    (target / "onnx").mkdir(exist_ok=True)
                    os.replace(built, target / rel_file)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the ONNX embedding model under {cache_dir}: {exc}"
        ) from exc
    except _foreign_errors() as exc:
        raise EmbeddingError(f"exporting {name} to ONNX int8 ({preset}) failed: {exc}") from exc
    return target, rel_file


# --------------------------------------------------------------------------------------
# sentence-transformers backends


def _foreign_errors(onnx: bool = True) -> tuple[type[BaseException], ...]:
    """Errors the model runtimes raise. onnxruntime's derive from Exception, not RuntimeError.

    ``onnx=False`` (the torch backend) leaves onnxruntime unimported: a web process that
    generates on workers then loads no ONNX runtime at all.
    """
    errors: list[type[BaseException]] = [RuntimeError, OSError, ValueError]
    if not onnx:
        return tuple(errors)
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_state
    except ImportError:  # pragma: no cover - onnxruntime is a dependency
        return tuple(errors)
    for name in (
        "Fail",
        "InvalidArgument",
        "NoSuchFile",
        "NoModel",
        "EngineError",
        "RuntimeException",
        "InvalidProtobuf",
        "ModelLoaded",
        "NotImplemented",
        "InvalidGraph",
        "EPFail",
    ):
        cls = getattr(ort_state, name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            errors.append(cls)
    return tuple(errors)


def resolve_model_dir(model: str) -> tuple[Path, str]:
    """``(folder, name)`` for ``PACKAGED_EMBED_MODEL`` or a local sentence-transformers folder."""
    if model == PACKAGED_EMBED_MODEL:
        return packaged_model_dir(), model[len(_PACKAGED_PREFIX) :]
    if model.startswith(_PACKAGED_PREFIX):
        raise ConfigError(
            f"unknown packaged embedding model {model!r}; the only one is {PACKAGED_EMBED_MODEL!r}"
        )
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"embedding model folder not found: {path} (copy a sentence-transformers model "
            f"folder there, or use {PACKAGED_EMBED_MODEL!r}; models are never downloaded)"
        )
    if not (path / "config.json").is_file():
        raise ConfigError(f"{path} is not a model folder: it has no config.json")
    return path.resolve(), path.resolve().name


class SentenceTransformerEmbedder(Embedder):
    def __init__(
        self,
        model: str,
        *,
        backend: Backend = "torch",
        cache_dir: Path,
        batch_size: int = 32,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        threads: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"embedding batch size must be >= 1, got {batch_size}")
        if threads is not None and threads < 1:
            raise ConfigError(f"embedding threads must be >= 1, got {threads}")
        self.model_dir, name = resolve_model_dir(model)
        self.backend: Backend = backend
        self.batch_size = batch_size
        # The model's name, not the backend: INT8 vectors are a close approximation of the
        # float ones (cosine > 0.95), so switching backend keeps stored vectors comparable
        # and must not force a re-embedding of every collection.
        self.model_id = name
        self._errors = _foreign_errors(onnx=backend != "torch")

        if backend == "torch":
            self._st = self._load_torch(threads)
        elif backend == "onnx-int8":
            self._st = self._load_onnx(cache_dir, threads)
        else:
            raise ConfigError(f"unknown embedding backend {backend!r} (torch or onnx-int8)")

        dim = self._st.get_embedding_dimension()
        if not dim:
            raise ConfigError(f"{name}: cannot tell the embedding dimension")
        self.dim = int(dim)
        max_len = self._st.max_seq_length
        if not max_len:
            raise ConfigError(f"{name}: the model folder sets no max_seq_length")
        self.max_tokens = int(max_len)

        # Priority: explicit setting > the model's own prompts > our table.
        q_table, p_table = default_prefixes(name)
        prompts = getattr(self._st, "prompts", None) or {}
        self.query_prefix = (
            query_prefix if query_prefix is not None else (prompts.get("query") or q_table)
        )
        self.passage_prefix = (
            passage_prefix
            if passage_prefix is not None
            else (prompts.get("document") or prompts.get("passage") or p_table)
        )

    def _load_torch(self, threads: int | None) -> SentenceTransformer:
        from sentence_transformers import SentenceTransformer

        if threads is not None:
            import torch

            # torch's intra-op pool is process-wide; a worker runs one embedder anyway.
            torch.set_num_threads(threads)
        try:
            model: SentenceTransformer = SentenceTransformer(
                str(self.model_dir), device="cpu", local_files_only=True
            )
        except self._errors as exc:
            raise EmbeddingError(f"cannot load embedding model {self.model_dir}: {exc}") from exc
        return model

    def _load_onnx(self, cache_dir: Path, threads: int | None) -> SentenceTransformer:
        from sentence_transformers import SentenceTransformer

        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ConfigError("the onnx-int8 embedding backend needs onnxruntime") from exc

        folder, rel_file = ensure_onnx_int8(self.model_dir, self.model_id, cache_dir)
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = threads
        try:
            model: SentenceTransformer = SentenceTransformer(
                str(folder),
                device="cpu",
                local_files_only=True,
                backend="onnx",
                model_kwargs={
                    "file_name": rel_file,
                    # Never pick up a GPU/TensorRT provider by accident: the int8 graph is
                    # tuned for this CPU.
                    "provider": "CPUExecutionProvider",
                    "session_options": opts,
                },
            )
        except self._errors as exc:
            raise EmbeddingError(f"cannot load ONNX embedding model {folder}: {exc}") from exc
        return model

    @property
    def tokenizer(self) -> Tokenizer:
        return load_tokenizer(self.model_dir)

    def _encode(self, texts: list[str]) -> np.ndarray:
        try:
            out: Any = self._st.encode(
                texts,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        except self._errors as exc:
            raise EmbeddingError(
                f"{self.model_id} ({self.backend}) failed to embed: {exc}"
            ) from exc
        return np.asarray(out, dtype=np.float32)

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({self.model_id!r}, backend={self.backend!r})"


# --------------------------------------------------------------------------------------
# factory and per-process cache


def build_embedder(settings: Settings) -> Embedder:
    return SentenceTransformerEmbedder(
        settings.embed_model,
        backend=settings.embed_backend,
        cache_dir=settings.model_cache_dir,
        batch_size=settings.embed_batch_size,
        query_prefix=settings.embed_query_prefix,
        passage_prefix=settings.embed_passage_prefix,
    )


_cache: dict[tuple[object, ...], Embedder] = {}
# One lock for the whole cache: loading is rare, and holding it while loading is what makes
# two threads asking for the same model at once load it once.
_cache_lock = threading.Lock()


def _cache_key(settings: Settings) -> tuple[object, ...]:
    return (
        settings.embed_model,
        settings.embed_backend,
        settings.embed_batch_size,
        settings.embed_query_prefix,
        settings.embed_passage_prefix,
        str(settings.model_cache_dir.resolve()),
    )


def preimport_runtime(settings: Settings) -> None:
    """Import the embedding runtime (torch, transformers, sentence-transformers; onnxruntime
    for the onnx-int8 backend) without loading any weights.

    A cold import of that stack takes 5-15 s on two busy cores. A worker calls this in its
    main process before the pool forks, so no task pays for it inside its time limit. That
    matters beyond speed: a soft time limit that fires in the middle of an import leaves
    half-initialised modules behind, and every later task of that process then fails with
    ImportError. Imports only: no threads start and no model is loaded, so nothing here
    must not cross a fork.
    """
    import sentence_transformers  # noqa: F401 - imported for its side effect
    from transformers import AutoModel, PreTrainedModel  # noqa: F401 - the lazy, slow part

    if settings.embed_backend == "onnx-int8":
        with contextlib.suppress(ImportError):  # reported by the first load, with advice
            import onnxruntime  # noqa: F401


def get_embedder(settings: Settings) -> Embedder:
    """The process-wide embedder for these settings, loaded on first use."""
    key = _cache_key(settings)
    with _cache_lock:
        emb = _cache.get(key)
        if emb is None:
            emb = build_embedder(settings)
            _cache[key] = emb
        return emb


def clear_embedder_cache() -> None:
    with _cache_lock:
        _cache.clear()
