"""Translatable sentences (qa/messages.py): English as they are raised, their template and
values kept across every boundary an error or a failure reason crosses (the error wire of
answer events and generation workers, the parser sandbox, the stored document reason), and
no user-facing error raised with a bare English string."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ingest.sandbox import _error_from_plain, _error_to_plain
from qa.errors import (
    Busy,
    DocqaError,
    HostileFile,
    InvalidInput,
    NoExtractableText,
    NotFound,
    ParseError,
    from_wire,
)
from qa.messages import N_, Translatable
from qa.reasons import HIDDEN, public_reason
from tests.conftest import REPO


def test_a_translatable_is_its_english_and_keeps_template_and_values() -> None:
    said = N_("no chat %(id)s in %(where)s", id="'c1'", where=N_("group name"))
    assert said == "no chat 'c1' in group name"
    assert isinstance(said, str) and isinstance(said, Translatable)
    assert said.template == "no chat %(id)s in %(where)s"
    back = Translatable.from_wire(said.to_wire())
    assert back == said and back is not None
    assert isinstance(back.params["where"], Translatable), "a nested message stays one"
    assert Translatable.from_wire({"template": "%(missing)s", "params": {"other": 1}}) is None
    assert Translatable.from_wire({"template": 3}) is None


def test_errors_carry_their_template_over_the_wire() -> None:
    error = NotFound(N_("no collection with id %(id)s", id=7))
    wire = error.to_wire()
    assert wire["message"] == "no collection with id 7"
    assert wire["i18n"] == {"template": "no collection with id %(id)s", "params": {"id": 7}}
    back = from_wire(wire)
    assert isinstance(back, NotFound) and isinstance(back.message, Translatable)
    assert back.message.template == "no collection with id %(id)s"
    # A busy error's own sentence, and an old peer's wire without a template.
    busy = from_wire(Busy(5).to_wire())
    assert isinstance(busy.message, Translatable) and busy.retry_after_s == 5  # type: ignore[attr-defined]
    plain = from_wire({"code": "invalid_input", "message": "made by an older release"})
    assert isinstance(plain, InvalidInput) and not isinstance(plain.message, Translatable)
    # A template that does not produce the message it came with is not trusted.
    odd = from_wire({"code": "not_found", "message": "x", "i18n": {"template": "y", "params": {}}})
    assert odd.message == "x" and not isinstance(odd.message, Translatable)


@pytest.mark.parametrize(
    "error",
    [
        NoExtractableText(),
        NoExtractableText(N_("OCR found no text")),
        HostileFile(N_("zip bomb: package expands %(ratio)sx", ratio="900")),
        ParseError(N_("malformed PDF: %(error)s", error="xref broken")),
    ],
)
def test_parse_reasons_cross_the_sandbox_still_translatable(error: ParseError) -> None:
    back = _error_from_plain(_error_to_plain(error))
    assert type(back) is type(error) and back.reason == error.reason
    assert isinstance(back.reason, Translatable)
    assert back.reason.template == error.reason.template  # type: ignore[attr-defined]


def test_a_public_reason_hides_paths_in_values_and_stays_translatable() -> None:
    said = public_reason(N_("could not parse %(kind)s: %(error)s", kind="pdf", error="at /srv/x"))
    assert isinstance(said, Translatable)
    assert said == f"could not parse pdf: at {HIDDEN}"
    assert said.params["error"] == f"at {HIDDEN}"


#: where people read the errors raised (pages, API responses, document reasons)
USER_FACING_MODULES = [
    "web",
    "qa/answering",
    "qa/accounts",
    "qa/library/service.py",
    "qa/summaries",
    "qa/llm/slot.py",
    "ingest/loaders",
    "ingest/ocr.py",
    "ingest/safety.py",
    "ingest/sandbox.py",
    "ingest/sniff.py",
]
USER_FACING_ERRORS = {
    cls.__name__
    for cls in (DocqaError, *DocqaError.__subclasses__())
    for cls in (cls, *cls.__subclasses__())
} - {
    # operators' errors: configuration, storage and model building are read in logs and
    # the CLI, in English
    "ConfigError",
    "ModelNotBuilt",
    "StorageError",
    "ModelBuildError",
    "ModelAccuracyError",
    "GenerationError",
    "InternalError",
    "IndexUnavailable",
    "EmbeddingError",
}
#: raised only when code calls a function wrongly, never on a person's input: a whole
#: module, or one message of a module
PROGRAMMING_ERRORS = {
    "qa/answering/spans.py": None,
    "qa/answering/prompt.py": "the source budget must be at least one token",
    "qa/accounts/audit.py": "an audit action is required",
    "qa/accounts/sessions.py": "a session lifetime must be positive",
    # API body validation: pydantic's own phrases about the field named
    "web/contracts/invalid.py": None,
}


def _allowed(rel: str, said: ast.expr) -> bool:
    if rel not in PROGRAMMING_ERRORS:
        return False
    text = PROGRAMMING_ERRORS[rel]
    return text is None or (isinstance(said, ast.Constant) and said.value == text)


def test_no_user_facing_error_is_raised_with_untranslatable_english() -> None:
    files: list[Path] = []
    for name in USER_FACING_MODULES:
        path = REPO / name
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    found = []
    for path in files:
        rel = path.relative_to(REPO).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name not in USER_FACING_ERRORS:
                continue
            said = node.args[0]
            if isinstance(said, ast.Constant | ast.JoinedStr) and not _allowed(rel, said):
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)[:100]}")
    assert not found, "say it with N_(...) (qa/messages.py):\n" + "\n".join(found)
