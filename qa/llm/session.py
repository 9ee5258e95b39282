"""The model's onnxruntime session: opened in the background, mapped from a prepacked copy.

Creating the session of the 4B model takes 10-16 s on two cores, and most of it is
prepacking: every MatMulNBits weight is rearranged into the layout its kernel reads, a 5 GB
copy on the heap. onnxruntime can write those packed weights into an external data file
(``session.save_external_prepacked_constant_initializers``) together with the optimized
graph; a later load then maps them instead of packing again: 5.4 s instead of 9.9 s (warm
page cache, AMD EPYC Zen 4), 0.13 GB of anonymous memory instead of 4.7 GB, and processes
on one machine share the pages.

So the first load on a machine writes such a copy (``PrepackedCopy``) into the model folder
and every later load maps it. The packed layout and the graph optimizations depend on the
CPU's instructions and on the onnxruntime version, so the copy is keyed by both (and by the
build); another machine, or a new onnxruntime, writes its own. The copy costs disk: about
2.2 times the model (onnxruntime keeps the unpacked weights beside the packed ones), hence
the free-space check and ``DOCQA_LLM_PREPACK=0``. It is written into a temporary folder and
renamed into place, under a lock, so a crash or a second worker never leaves a half copy.

``SessionLoader`` opens the session on a thread: onnxruntime releases the GIL while it
loads, so a process imports and loads everything else (the tokenizer, the embedder) on the
other core meanwhile. Only onnxruntime's C++ work runs on that thread: Python imports stay
on the caller's, because two threads importing one package can see it half initialized.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from qa.cpu import cpu_flags
from qa.errors import ModelNotBuilt
from qa.llm.manifest import MODEL_FILE
from qa.store.fsutil import fsync_path

log = logging.getLogger(__name__)

PREPACKED_DIR = "prepacked"
_DONE = "prepacked.json"  # written last: a folder without it is incomplete
_LOCK = ".lock"  # held by the process writing a copy
#: the flags MLAS chooses its kernels (and so the packed layouts) by
_KERNEL_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
#: what the copy takes beside the model, as a multiple of the model's size (measured: 9.96 GB
#: for a 4.55 GB model), plus room the rest of the service may need
_COPY_FACTOR = 2.3
_SPARE_BYTES = 1 << 30


def machine_key(ort_version: str, flags: set[str] | None = None) -> str:
    """What a prepacked copy depends on besides the model: onnxruntime's version and the CPU
    instructions its kernels pick."""
    have = cpu_flags() if flags is None else flags
    wanted = ",".join(f for f in _KERNEL_FLAGS if f in have)
    return hashlib.sha256(f"{ort_version}|{wanted}".encode()).hexdigest()[:16]


def session_options(threads: int | None, spin: bool) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


@dataclass(frozen=True)
class PrepackedCopy:
    """The optimized graph plus packed weights of the model in ``model_dir`` for this
    machine."""

    model_dir: Path
    build_key: str
    machine: str

    @classmethod
    def of(cls, model_dir: Path, build_key: str) -> PrepackedCopy:
        import onnxruntime as ort

        return cls(model_dir, build_key, machine_key(ort.__version__))

    @property
    def folder(self) -> Path:
        # the build key reads "<fingerprint>:<precision>:<kv>"; no colons in a folder name
        # (SMB shares refuse them)
        return self.model_dir / PREPACKED_DIR / f"{self.build_key.replace(':', '-')}-{self.machine}"

    @property
    def model(self) -> Path:
        return self.folder / MODEL_FILE

    def source_stamp(self) -> list[list[int]]:
        """Size and modification time of the model's files: a copy made from other files
        (a model replaced by hand under the same build key) is not this model's."""
        stamps = []
        for name in (MODEL_FILE, f"{MODEL_FILE}.data"):
            try:
                st = (self.model_dir / name).stat()
            except FileNotFoundError:
                continue
            stamps.append([st.st_size, st.st_mtime_ns])
        return stamps

    def record(self) -> dict[str, Any]:
        return {"build_key": self.build_key, "machine": self.machine, "source": self.source_stamp()}

    def ready(self) -> bool:
        try:
            done = json.loads((self.folder / _DONE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return done == self.record() and self.model.is_file()

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.folder.iterdir()) if self.ready() else 0

    def room(self) -> bool:
        """Whether the disk has room for a copy (and some to spare)."""
        source = sum(f.stat().st_size for f in self.model_dir.glob(f"{MODEL_FILE}*"))
        free = shutil.disk_usage(self.model_dir).free
        return free >= source * _COPY_FACTOR + _SPARE_BYTES

    def clear_folder(self) -> None:
        """Everything in ``prepacked/`` but the writers' lock, before this copy is written:
        copies for other builds, machines or onnxruntime versions (never read here again;
        another machine sharing the folder writes its own back), an outdated one of this
        name, and half-written ones a killed process left. Called with the lock held, and
        before the free-space check, so that what they took counts as free."""
        for other in (self.model_dir / PREPACKED_DIR).iterdir():
            if other.name != _LOCK:
                shutil.rmtree(other, ignore_errors=True)


class OpenedSession(NamedTuple):
    session: Any
    #: "prepacked" (mapped from this machine's copy), "prepacked now" (loaded while writing
    #: the copy) or "model" (packed on the heap, as onnxruntime does by default)
    source: str
    #: this machine's copy, where the session's weights (and the system prompt's KV) live;
    #: None for "model"
    copy_folder: Path | None


def _save_options(opts: Any, into: Path) -> Any:
    # onnxruntime warns that the optimized graph is specific to this machine's CPU: the
    # copy is keyed by it, so the warning would only alarm whoever reads the log
    opts.log_severity_level = 3
    opts.optimized_model_filepath = str(into / MODEL_FILE)
    opts.add_session_config_entry(
        "session.optimized_model_external_initializers_file_name", f"{MODEL_FILE}.data"
    )
    opts.add_session_config_entry(
        "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
    )
    opts.add_session_config_entry("session.save_external_prepacked_constant_initializers", "1")
    return opts


def open_session(
    model_dir: Path, build_key: str, threads: int | None, spin: bool, prepack: bool
) -> OpenedSession:
    """The model's session, mapped from this machine's prepacked copy when ``prepack`` (the
    first time, loaded while the copy is written)."""
    import onnxruntime as ort

    def load(path: Path, opts: Any) -> Any:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    source = model_dir / MODEL_FILE
    if not prepack:
        return OpenedSession(load(source, session_options(threads, spin)), "model", None)
    copy = PrepackedCopy.of(model_dir, build_key)
    if copy.ready():
        try:
            mapped = load(copy.model, session_options(threads, spin))
            return OpenedSession(mapped, "prepacked", copy.folder)
        except Exception as exc:  # a damaged copy: written again below
            log.warning("prepacked copy %s does not load (%s): writing it again", copy.folder, exc)
    written = _write_copy(
        copy, lambda into: load(source, _save_options(session_options(threads, spin), into))
    )
    if written is not None:
        return OpenedSession(written, "prepacked now", copy.folder)
    return OpenedSession(load(source, session_options(threads, spin)), "model", None)


def _write_copy(copy: PrepackedCopy, load: Any) -> Any | None:
    """Load the model while writing ``copy``; None when it can't be written here (read-only
    folder, too little disk, another process writing it): the caller loads it plainly."""
    parent = copy.folder.parent
    try:
        parent.mkdir(exist_ok=True)
        lock = open(parent / _LOCK, "a+b")  # noqa: SIM115 (held while the copy is written)
    except OSError as exc:
        log.info("no prepacked copy of the model (%s): weights are packed at every load", exc)
        return None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            log.info("another process is writing the prepacked copy: packing at load this time")
            return None
        copy.clear_folder()
        if not copy.room():
            log.warning(
                "not enough free disk for a prepacked copy of the model in %s: weights are "
                "packed at every load (set DOCQA_LLM_PREPACK=0 to stop trying)",
                parent,
            )
            return None
        tmp = Path(tempfile.mkdtemp(prefix=".writing-", dir=parent))
        try:
            try:
                session = load(tmp)
            except Exception as exc:  # e.g. the disk filled up: serve without a copy
                log.warning("could not write a prepacked copy of the model: %s", exc)
                return None
            for f in tmp.iterdir():
                fsync_path(f)
            (tmp / _DONE).write_text(json.dumps(copy.record()) + "\n", encoding="utf-8")
            fsync_path(tmp / _DONE)
            tmp.chmod(0o755)  # mkdtemp's 0700 would hide it from a service running as another user
            os.replace(tmp, copy.folder)
            fsync_path(parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote a prepacked copy of the model: %s", copy.folder)
    return session


class SessionLoader:
    """``open_session`` on a thread; ``result`` waits for it (ModelNotBuilt if it failed)."""

    def __init__(
        self, model_dir: Path, build_key: str, threads: int | None, spin: bool, prepack: bool
    ) -> None:
        import onnxruntime  # noqa: F401  (imported here, on the caller's thread)

        self.model_dir = model_dir
        self._result: OpenedSession | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run,
            args=(model_dir, build_key, threads, spin, prepack),
            name="docqa-model-load",
            daemon=True,
        )
        self._thread.start()

    def _run(self, *args: Any) -> None:
        try:
            self._result = open_session(*args)
        except BaseException as exc:  # handed to the thread that waits
            self._error = exc

    def result(self) -> OpenedSession:
        self._thread.join()
        if self._result is None:
            raise ModelNotBuilt(
                f"{self.model_dir}: model does not load ({self._error})"
            ) from self._error
        return self._result
