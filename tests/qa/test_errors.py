"""The error wire format: every docqa error crosses a process or HTTP boundary as itself."""

from __future__ import annotations

import json

import pytest

from qa import errors
from qa.errors import (
    Busy,
    DocqaError,
    GenerationError,
    NotFound,
    PasswordProtected,
    RateLimited,
    Unavailable,
    UnsupportedType,
    from_wire,
)


def _every_error_class() -> list[type[DocqaError]]:
    found: list[type[DocqaError]] = []
    todo: list[type[DocqaError]] = [DocqaError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize(
    "error",
    [
        Busy(7),
        RateLimited(3),
        Unavailable("the queue is down", retry_after_s=9),
        UnsupportedType("jpeg"),
        PasswordProtected(),
        NotFound("no collection 12"),
        GenerationError("onnxruntime failed"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_round_trip_through_json_keeps_class_message_and_fields(error: DocqaError) -> None:
    back = from_wire(json.loads(json.dumps(error.to_wire())))
    assert type(back) is type(error)
    assert str(back) == str(error) and back.code == error.code
    for name in error.wire_fields:
        assert getattr(back, name) == getattr(error, name)


def test_busy_keeps_its_retry_after_without_reading_the_message() -> None:
    back = from_wire({"code": "busy", "message": "whatever text", "retry_after_s": 42})
    assert isinstance(back, Busy) and back.retry_after_s == 42


def test_every_class_has_its_own_code_and_is_found_by_it() -> None:
    classes = _every_error_class()
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes))
    for cls in classes:
        assert type(from_wire({"code": cls.code, "message": "m"})) is cls


def test_a_second_class_with_a_taken_code_is_refused() -> None:
    with pytest.raises(TypeError, match="taken"):
        type("Again", (DocqaError,), {"code": NotFound.code})


def test_unknown_codes_and_missing_fields() -> None:
    plain = from_wire({"code": "from_a_newer_peer", "message": "m"})
    assert type(plain) is DocqaError and plain.code == "from_a_newer_peer"
    assert errors.DocqaError.code == "error"  # the class keeps its own code
    as_generation = from_wire({"code": "from_a_newer_peer"}, unknown=GenerationError)
    assert type(as_generation) is GenerationError and str(as_generation)
    assert type(from_wire({})) is DocqaError
