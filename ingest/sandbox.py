"""Parse untrusted files in a child process with CPU, memory and wall-clock limits.

A bad file can only fail itself: parsing runs in a separate interpreter started with the
"spawn" method (the parent may hold torch threads, which ``fork`` would copy half-alive).
That child stays warm and serves many files over a Pipe, because starting an interpreter
and importing pypdf/lxml/openpyxl costs about half a second per file. It is replaced after
a crash, a timeout, a limit hit, or ``max_files_per_child`` files.

Limits, and who enforces them:

* memory: ``RLIMIT_AS`` set once in the child before any parsing; an allocation past it is a
  ``MemoryError`` (reported, then the child is replaced) or a death by signal.
* CPU: before each file the child sets the soft ``RLIMIT_CPU`` to its CPU time so far plus
  ``cpu_s``; the kernel sends SIGXCPU when the file uses more, which kills the child.
* wall clock: the parent waits ``timeout_s`` for the answer, then SIGKILLs the child
  (covers a parser blocked without using CPU, which RLIMIT_CPU cannot see).

The answer crosses the process boundary as JSON bytes (never pickle): the parent must not
run code chosen by a compromised child.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import resource
import signal
import threading
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from ingest.document import Heading, Page, ParsedDocument, TextBox
from ingest.safety import check_file_size
from ingest.sniff import sniff_path
from qa import errors
from qa.errors import ParseError, ParseLimitExceeded, ParserCrashed
from qa.messages import N_, Translatable, restored
from qa.settings import Settings

log = logging.getLogger(__name__)

MiB = 1024 * 1024
#: how long a fresh child may take to import the parsers before it counts as broken
CHILD_START_TIMEOUT_S = 120.0

#: the ParseError subclasses a child may report (anything else becomes a plain ParseError)
_ERROR_TYPES: dict[str, type[ParseError]] = {
    cls.__name__: cls
    for cls in (
        errors.ParseError,
        errors.HostileFile,
        errors.ParseLimitExceeded,
        errors.ParserCrashed,
        errors.NoExtractableText,
    )
}


@dataclass(frozen=True)
class ParseLimits:
    timeout_s: float
    cpu_s: int
    memory_mb: int
    max_file_bytes: int
    zip_max_entries: int
    zip_max_uncompressed_bytes: int
    zip_max_ratio: float
    ocr: bool = False
    ocr_page_s: int = 60
    ocr_max_pages: int = 500

    @classmethod
    def from_settings(cls, settings: Settings) -> ParseLimits:
        return cls(
            timeout_s=settings.parse_timeout_s,
            cpu_s=settings.parse_cpu_s,
            memory_mb=settings.parse_memory_mb,
            max_file_bytes=settings.max_file_mb * MiB,
            zip_max_entries=settings.zip_max_entries,
            zip_max_uncompressed_bytes=settings.zip_max_uncompressed_mb * MiB,
            zip_max_ratio=settings.zip_max_ratio,
            ocr=settings.ocr == "auto",
            ocr_page_s=settings.ocr_page_timeout_s,
            ocr_max_pages=settings.ocr_max_pages,
        )


# --------------------------------------------------------------------------- child side

#: set in the sandbox child: tells the parent that a long parse (OCR, page by page) is still
#: making progress, and gives the child a fresh CPU budget for the next step
_progress: Callable[[], None] | None = None


def progress() -> None:
    """Called by loaders between expensive steps; does nothing outside the sandbox child."""
    if _progress is not None:
        _progress()


def parse_in_process(path: Path, limits: ParseLimits, name: str | None = None) -> ParsedDocument:
    """Sniff and load ``path`` in THIS process; every failure becomes a ``ParseError``.

    The sandbox child runs this. Tests call it directly to exercise loaders without a child.
    Not thread-safe: it silences library warnings with ``warnings.catch_warnings``.
    """
    # Imported here so the parent (web app, pipeline) does not pay for pypdf/lxml/openpyxl.
    from ingest import loaders

    kind = "file"
    try:
        check_file_size(path, limits)
        # Blobs are stored by hash, without a suffix: the client's file name breaks ties
        # between text kinds (Markdown vs plain text) as it would for the original file.
        kind = sniff_path(path, name)
        with warnings.catch_warnings(record=True) as caught:
            # Library warnings describe the file ("unknown extension", "style missing"), not
            # our code; pytest's warnings-as-errors must not turn them into parse failures.
            warnings.simplefilter("always")
            document = loaders.load(path, kind, limits)
        for warning in caught[:5]:
            log.debug("%s: %s: %s", path.name, warning.category.__name__, warning.message)
        return document
    except ParseError:
        raise
    except MemoryError as exc:
        raise ParseLimitExceeded(N_("memory limit exceeded")) from exc
    except RecursionError as exc:
        raise errors.HostileFile(N_("%(kind)s structure nested too deeply", kind=kind)) from exc
    except Exception as exc:
        raise ParseError(
            N_("could not parse %(kind)s: %(error)s", kind=kind, error=_short(exc))
        ) from exc


def _short(exc: BaseException) -> str:
    """The first line of a library's message, for a reason people read: without the
    exception's class name (``KeyError: ...`` means nothing to an admin)."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = message.strip("'\"") or N_("an unexpected structure inside the file")
    return text if len(text) <= 200 else text[:197] + "..."


def _document_to_plain(document: ParsedDocument) -> dict[str, Any]:
    return asdict(document)


def _document_from_plain(data: dict[str, Any]) -> ParsedDocument:
    pages = tuple(
        Page(
            number=int(p["number"]),
            text=str(p["text"]),
            headings=tuple(
                Heading(int(h["offset"]), int(h["level"]), str(h["title"])) for h in p["headings"]
            ),
            ocr=bool(p.get("ocr")),
            boxes=tuple(_box(b) for b in p.get("boxes") or ()),
        )
        for p in data["pages"]
    )
    title = data.get("title")
    metadata = {str(k): str(v) for k, v in dict(data.get("metadata") or {}).items()}
    return ParsedDocument(
        kind=str(data["kind"]),
        pages=pages,
        title=str(title) if title is not None else None,
        metadata=metadata,
    )


def _box(plain: dict[str, Any]) -> TextBox:
    return TextBox(
        int(plain["start"]),
        int(plain["end"]),
        *(min(1.0, max(0.0, float(plain[k]))) for k in ("left", "top", "right", "bottom")),
    )


def _error_to_plain(error: ParseError) -> dict[str, Any]:
    plain: dict[str, Any] = {"type": type(error).__name__, "reason": str(error.reason)}
    if isinstance(error.reason, Translatable):
        plain["i18n"] = error.reason.to_wire()
    if isinstance(error, errors.UnsupportedType):
        plain["kind"] = error.kind
    return plain


def _error_from_plain(data: dict[str, Any]) -> ParseError:
    name = str(data.get("type"))
    reason: str = str(data.get("reason", "parse failed"))
    if name == "UnsupportedType":
        return errors.UnsupportedType(str(data.get("kind", "unknown")))
    if name == "PasswordProtected":
        return errors.PasswordProtected()
    return _ERROR_TYPES.get(name, ParseError)(restored(reason, data.get("i18n")))


def _set_cpu_budget(seconds: int) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(used) + seconds
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _child_main(conn: Connection, limits: ParseLimits, hook: Callable[[Path], None] | None) -> None:
    """Serve parse requests until the parent closes the pipe."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crashing parser dumps no core files
    # pypdf logs every repaired xref as a warning; nobody reads the child's stderr for that.
    logging.basicConfig(level=logging.ERROR)
    memory = limits.memory_mb * MiB
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    # Pay the import cost once, now, not inside the first file's time budget.
    import ingest.loaders  # noqa: F401

    conn.send_bytes(b'{"ready": true}')

    def report_progress() -> None:
        _set_cpu_budget(limits.cpu_s)
        conn.send_bytes(b'{"progress": true}')

    global _progress
    _progress = report_progress
    while True:
        try:
            request = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        path = Path(request["path"])
        name = request.get("name")
        _set_cpu_budget(limits.cpu_s)
        try:
            if hook is not None:
                hook(path)
            parsed = parse_in_process(path, limits, name if isinstance(name, str) else None)
            reply: dict[str, Any] = {"document": _document_to_plain(parsed)}
        except ParseError as exc:
            reply = {"error": _error_to_plain(exc)}
        except MemoryError:  # e.g. raised in the hook
            reply = {"error": _error_to_plain(ParseLimitExceeded(N_("memory limit exceeded")))}
        except Exception as exc:  # the hook, or a bug of ours: report, do not die silently
            failed = ParseError(N_("could not parse: %(error)s", error=_short(exc)))
            reply = {"error": _error_to_plain(failed)}
        try:
            payload = json.dumps(reply).encode()
        except MemoryError:
            payload = (
                b'{"error": {"type": "ParseLimitExceeded", "reason": "memory limit exceeded"}}'
            )
        conn.send_bytes(payload)


# -------------------------------------------------------------------------- parent side


class SandboxedParser:
    """Parses files in a warm, resource-limited child process; safe to share between threads.

    ``before_parse`` is a picklable (module-level) function the child calls with each path
    before parsing it: a seam for tests that need a child to crash, hang or spin.
    """

    def __init__(
        self,
        limits: ParseLimits,
        *,
        max_files_per_child: int = 200,
        start_method: Literal["spawn", "forkserver"] = "spawn",
        before_parse: Callable[[Path], None] | None = None,
    ) -> None:
        self.limits = limits
        self.max_files_per_child = max_files_per_child
        # Never "fork": the parent may run torch/BLAS threads that a fork would copy mid-lock.
        self._context: SpawnContext | ForkServerContext = (
            multiprocessing.get_context("spawn")
            if start_method == "spawn"
            else multiprocessing.get_context("forkserver")
        )
        self._before_parse = before_parse
        self._lock = threading.Lock()
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._files_served = 0
        self._closed = False
        #: a request was sent and its reply not read: the child is mid-file (the caller was
        #: interrupted, e.g. by a task's soft time limit) and will not see a closed pipe
        self._busy = False

    def __enter__(self) -> SandboxedParser:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def child_pid(self) -> int | None:
        """Process id of the warm child, if one is running."""
        process = self._process
        return process.pid if process is not None and process.is_alive() else None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._stop_child()

    def parse(self, path: Path, name: str | None = None) -> ParsedDocument:
        """Parse in the child; ``name`` is the client's file name (a type hint only)."""
        path = Path(path).resolve()
        with self._lock:
            if self._closed:
                raise RuntimeError("SandboxedParser is closed")
            conn, process = self._ensure_child()
            self._files_served += 1
            self._busy = True
            conn.send_bytes(json.dumps({"path": str(path), "name": name}).encode())
            reply = self._reply(conn, process)
            self._busy = False
            if "document" in reply:
                if self._files_served >= self.max_files_per_child:
                    self._stop_child()
                return _document_from_plain(reply["document"])
            error = _error_from_plain(reply.get("error") or {})
            if isinstance(error, ParseLimitExceeded):
                # After a MemoryError the child's heap may be fragmented or half-broken.
                self._stop_child(kill=True)
            raise error

    def _reply(self, conn: Connection, process: BaseProcess) -> dict[str, Any]:
        """The child's answer. Progress frames (one per OCR'd page) restart the wait: the
        timeout bounds each step, and the number of steps is bounded by ocr_max_pages."""
        timeout = self.limits.timeout_s
        steps = 0
        while True:
            if not conn.poll(timeout):
                self._stop_child(kill=True)
                raise ParseLimitExceeded(
                    N_("parse timed out after %(seconds)ss", seconds=f"{timeout:g}")
                )
            try:
                reply = json.loads(conn.recv_bytes())
            except (EOFError, OSError):
                raise self._crash_error(process) from None
            if not (isinstance(reply, dict) and reply.get("progress")):
                return reply if isinstance(reply, dict) else {}
            steps += 1
            if steps > self.limits.ocr_max_pages + 1:
                self._stop_child(kill=True)
                raise ParseLimitExceeded(N_("parse made more steps than its page limit allows"))
            timeout = self.limits.timeout_s + self.limits.ocr_page_s

    # ---------------------------------------------------------------- child management

    def _ensure_child(self) -> tuple[Connection, BaseProcess]:
        if self._process is not None and self._conn is not None and self._process.is_alive():
            return self._conn, self._process
        self._stop_child(kill=True)
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_child_main,
            args=(child_conn, self.limits, self._before_parse),
            name="docqa-parser",
            daemon=True,
        )
        process.start()
        child_conn.close()
        self._process, self._conn, self._files_served = process, parent_conn, 0
        try:
            ready = parent_conn.poll(CHILD_START_TIMEOUT_S) and parent_conn.recv_bytes()
        except (EOFError, OSError):
            ready = False
        if not ready:
            error = self._crash_error(process)
            raise ParserCrashed(
                N_("parser process failed to start (%(error)s)", error=error.reason)
            )
        return parent_conn, process

    def _crash_error(self, process: BaseProcess) -> ParseError:
        """The error for a child that died mid-request (also forgets the child)."""
        process.join(timeout=5)
        if process.exitcode is None:
            process.kill()
            process.join(timeout=5)
        code = process.exitcode
        self._stop_child(kill=True)
        if code is not None and code < 0:
            if -code == signal.SIGXCPU:
                return ParseLimitExceeded(N_("CPU time limit exceeded"))
            return ParserCrashed(N_("parser crashed (signal %(signal)s)", signal=-code))
        return ParserCrashed(N_("parser exited with code %(code)s", code=code))

    def _stop_child(self, kill: bool = False) -> None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        kill = kill or self._busy  # a child mid-file would only see the EOF when done
        self._busy = False
        if conn is not None:
            conn.close()  # an idle child sees EOF and returns
        if process is None:
            return
        if kill and process.is_alive():
            process.kill()
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)
        if process.exitcode is not None:
            process.close()
