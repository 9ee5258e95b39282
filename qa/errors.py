"""The one error hierarchy of docqa.

Foreign errors (pypdf, faiss, onnxruntime, redis, SQLAlchemy) are translated into these at
one boundary with ``raise ... from``, so callers only ever catch ``DocqaError`` subclasses::

    DocqaError
    ├── ConfigError            settings that cannot work (missing model folder, bad URL)
    │   └── ModelNotBuilt      the model folder holds no complete built model
    ├── InvalidInput           a request or file argument that is malformed or out of range
    │   ├── TooLarge           a body or file over its size cap (web: 413)
    │   └── UnsupportedMediaType  a body of a type the endpoint does not take (web: 415)
    ├── NotFound               a collection, document or job that does not exist (or one the
    │                          caller may not see: existence is not revealed)
    ├── Conflict               a name that is already taken
    ├── Unauthenticated        missing or wrong credentials, expired session, revoked token
    ├── PermissionDenied       signed in, but the role or grant does not allow it
    ├── RateLimited            too many requests from one user (web: 429 + Retry-After)
    ├── Unavailable            a part the request needs is not running (web: 503)
    ├── ParseError             a file that could not become text (reason shown to admins)
    │   ├── UnsupportedType
    │   ├── PasswordProtected
    │   ├── NoExtractableText
    │   ├── HostileFile        zip bombs, entity tricks, absurd nesting
    │   ├── ParseLimitExceeded CPU time, wall time or memory cap hit in the sandbox
    │   └── ParserCrashed      the sandboxed child died (segfault, kill)
    ├── StorageError           blob store or metadata DB failure
    ├── IndexUnavailable       no published index, or one that fails its consistency check
    ├── EmbeddingError         the embedding model failed to load or run
    ├── ModelBuildError        a model folder that cannot be turned into an ONNX model
    │   └── ModelAccuracyError the built INT8 model fails the check against float32
    ├── GenerationError        onnxruntime failed while running the model
    ├── Busy                   the model queue is full (web: 503 + Retry-After)
    ├── Cancelled              the client went away while waiting
    └── InternalError          an unexpected failure, reported without its internals

Errors cross process and HTTP boundaries (answer events, generation workers over Redis)
as ``error.to_wire()``, a JSON object ``{"code", "message", ...}`` carrying the class's
extra fields (``retry_after_s``, ``reason``, ``kind``), and come back as the same class
through ``from_wire``, looked up by code in a registry every subclass joins when it is
defined. No consumer parses a message text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qa.messages import N_, Translatable, restored

_BY_CODE: dict[str, type[DocqaError]] = {}


class DocqaError(Exception):
    """Base of every error docqa raises on purpose."""

    #: short machine-readable code, stable across releases (API clients switch on it)
    code = "error"
    #: attributes beyond the message that ``to_wire`` carries and ``from_wire`` restores
    wire_fields: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.code in _BY_CODE:
            raise TypeError(f"error code {cls.code!r} is taken by {_BY_CODE[cls.code].__name__}")
        _BY_CODE[cls.code] = cls

    @property
    def message(self) -> str:
        """The message as raised: a ``qa.messages.Translatable`` when it can be translated."""
        first = self.args[0] if self.args else None
        return first if isinstance(first, str) else str(self)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"code": self.code, "message": str(self)}
        if isinstance(self.message, Translatable):
            wire["i18n"] = self.message.to_wire()
        for name in self.wire_fields:
            value = getattr(self, name)
            wire[name] = str(value) if isinstance(value, Translatable) else value
        return wire


_BY_CODE[DocqaError.code] = DocqaError


def from_wire(wire: Mapping[str, Any], unknown: type[DocqaError] = DocqaError) -> DocqaError:
    """The error ``to_wire`` described, as its own class (constructors are bypassed: the
    message and fields are the ones that were sent). A code this process does not know
    (a newer peer) becomes ``unknown``; the plain ``DocqaError`` keeps the code it got."""
    code = str(wire.get("code") or DocqaError.code)
    cls = _BY_CODE.get(code, unknown)
    error = cls.__new__(cls)
    text = str(wire.get("message") or "an error occurred")
    Exception.__init__(error, restored(text, wire.get("i18n")))
    for name in cls.wire_fields:
        if name in wire:
            setattr(error, name, wire[name])
    if isinstance(error, ParseError) and getattr(error, "reason", text) == text:
        error.reason = error.message  # the reason is the message: keep it translatable
    if code not in _BY_CODE and cls is DocqaError:
        error.code = code
    return error


class ConfigError(DocqaError):
    code = "config"


class InvalidInput(DocqaError):
    code = "invalid_input"


def require(*checks: tuple[bool, str]) -> None:
    """Raise ``InvalidInput`` with the message of the first check that does not hold."""
    for ok, message in checks:
        if not ok:
            raise InvalidInput(message)


class TooLarge(InvalidInput):
    code = "too_large"


class UnsupportedMediaType(InvalidInput):
    code = "unsupported_media_type"


class NotFound(DocqaError):
    code = "not_found"


class Conflict(DocqaError):
    code = "conflict"


class Unauthenticated(DocqaError):
    code = "unauthenticated"


class PermissionDenied(DocqaError):
    code = "forbidden"


class RateLimited(DocqaError):
    code = "rate_limited"
    wire_fields: tuple[str, ...] = ("retry_after_s",)

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(N_("too many requests; retry in %(seconds)s s", seconds=retry_after_s))
        self.retry_after_s = retry_after_s


class Unavailable(DocqaError):
    code = "unavailable"
    wire_fields: tuple[str, ...] = ("retry_after_s",)

    def __init__(self, message: str, retry_after_s: int = 30) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ParseError(DocqaError):
    """A file that could not be parsed. ``reason`` is what the document status shows."""

    code = "parse_failed"
    wire_fields: tuple[str, ...] = ("reason",)

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnsupportedType(ParseError):
    code = "unsupported_type"
    wire_fields = ("reason", "kind")

    def __init__(self, kind: str) -> None:
        super().__init__(N_("unsupported type %(kind)s", kind=kind))
        self.kind = kind


class PasswordProtected(ParseError):
    code = "password_protected"

    def __init__(self) -> None:
        super().__init__(N_("password-protected"))


class NoExtractableText(ParseError):
    code = "no_text"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or N_("no extractable text (scanned?)"))


class HostileFile(ParseError):
    code = "hostile_file"


class ParseLimitExceeded(ParseError):
    code = "parse_limit"


class ParserCrashed(ParseError):
    code = "parser_crashed"


class StorageError(DocqaError):
    code = "storage"


class IndexUnavailable(DocqaError):
    code = "index_unavailable"


class EmbeddingError(DocqaError):
    code = "embedding"


class ModelNotBuilt(ConfigError):
    code = "model_not_built"


class ModelBuildError(DocqaError):
    code = "model_build"


class ModelAccuracyError(ModelBuildError):
    """The INT8 graph strays too far from the float32 reference (``qa/llm/accuracy.py``)."""

    code = "model_accuracy"


class GenerationError(DocqaError):
    """onnxruntime failed while running the model (translated at the session boundary)."""

    code = "generation"


class Busy(DocqaError):
    code = "busy"
    wire_fields: tuple[str, ...] = ("retry_after_s",)

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            N_("the model is busy; retry in about %(seconds)s s", seconds=retry_after_s)
        )
        self.retry_after_s = retry_after_s


class Cancelled(DocqaError):
    code = "cancelled"


class InternalError(DocqaError):
    """What a client is told about a failure docqa did not expect (the details are logged)."""

    code = "internal"
