"""The one error hierarchy of docqa.

Foreign errors (pypdf, faiss, onnxruntime, redis, SQLAlchemy) are translated into these at
one boundary with ``raise ... from``, so callers only ever catch ``DocqaError`` subclasses::

    DocqaError
    ├── ConfigError            settings that cannot work (missing model folder, bad URL)
    │   └── ModelNotBuilt      the model folder holds no complete built model
    ├── InvalidInput           a request or file argument that is malformed or out of range
    ├── NotFound               a collection, document or job that does not exist
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
    ├── GenerationError        onnxruntime failed while running the model
    ├── Busy                   the model queue is full (web: 503 + Retry-After)
    └── Cancelled              the client went away while waiting
"""

from __future__ import annotations


class DocqaError(Exception):
    """Base of every error docqa raises on purpose."""

    #: short machine-readable code, stable across releases (API clients switch on it)
    code = "error"


class ConfigError(DocqaError):
    code = "config"


class InvalidInput(DocqaError):
    code = "invalid_input"


class NotFound(DocqaError):
    code = "not_found"


class ParseError(DocqaError):
    """A file that could not be parsed. ``reason`` is what the document status shows."""

    code = "parse_failed"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnsupportedType(ParseError):
    code = "unsupported_type"

    def __init__(self, kind: str) -> None:
        super().__init__(f"unsupported type {kind}")
        self.kind = kind


class PasswordProtected(ParseError):
    code = "password_protected"

    def __init__(self) -> None:
        super().__init__("password-protected")


class NoExtractableText(ParseError):
    code = "no_text"

    def __init__(self, detail: str = "no extractable text (scanned?)") -> None:
        super().__init__(detail)


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


class GenerationError(DocqaError):
    """onnxruntime failed while running the model (translated at the session boundary)."""

    code = "generation"


class Busy(DocqaError):
    code = "busy"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"the model is busy; retry in about {retry_after_s} s")
        self.retry_after_s = retry_after_s


class Cancelled(DocqaError):
    code = "cancelled"
