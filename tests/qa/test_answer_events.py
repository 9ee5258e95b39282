"""Answer events: their wire form, and the one collector every consumer folds a stream with."""

from __future__ import annotations

import json

import pytest

from qa.answering.events import (
    AnswerCollector,
    Citations,
    Done,
    ErrorEvent,
    Queued,
    Sources,
    Token,
)
from qa.errors import Busy

SOURCE = {"n": 1, "document_id": "d" * 40, "document_name": "a.pdf", "page_start": 4}
CITATIONS = Citations(
    citations=[{"n": 1, "document_id": "d" * 40}],
    invalid=1,
    text="The limit is 180 EUR [1].",
    highlights=[{"n": 1, "page": 4, "char_start": 0, "char_end": 20}],
)


def test_wire_forms_are_plain_json_with_their_type() -> None:
    events = [
        Sources([SOURCE]),
        Sources([SOURCE], dropped=2),
        Queued(3),
        Token("The limit"),
        CITATIONS,
        Done(mode="extractive", finish_reason="stop", retrieval_ms=3.5),
        ErrorEvent(Busy(7)),
    ]
    wires = [json.loads(json.dumps(e.to_json())) for e in events]
    assert [w["type"] for w in wires] == [e.type for e in events]
    assert "dropped" not in wires[0] and wires[1]["dropped"] == 2
    assert wires[2] == {"type": "queued", "position": 3}
    assert wires[4]["text"] == CITATIONS.text and wires[4]["invalid"] == 1
    # A mode's done carries only what it measured.
    assert wires[5] == {
        "type": "done",
        "mode": "extractive",
        "outcome": "answered",
        "finish_reason": "stop",
        "retrieval_ms": 3.5,
    }
    assert wires[6] == {
        "type": "error",
        "code": "busy",
        "message": str(Busy(7)),
        # the sentence's template, so a page can say it in its reader's language
        "i18n": {
            "template": "the model is busy; retry in about %(seconds)s s",
            "params": {"seconds": 7},
        },
        "retry_after_s": 7,
    }
    back = ErrorEvent.from_json(wires[6])
    assert isinstance(back.error, Busy) and back.error.retry_after_s == 7


def test_events_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Token("a").text = "b"  # type: ignore[misc]


def test_a_complete_stream_folds_into_the_answer() -> None:
    done = Done(mode="generative", finish_reason="length", retrieval_ms=2.0, prompt_tokens=9)
    said = AnswerCollector().feed_all(
        [
            Sources([SOURCE]),
            Queued(1),
            Token("The limit "),
            Token("is 180 EUR [1][7]."),
            CITATIONS,
            done,
        ]
    )
    assert said.complete and said.sources == [SOURCE]
    assert said.tokens == ["The limit ", "is 180 EUR [1][7]."]
    assert said.text == CITATIONS.text  # the checked text, invalid [7] removed
    assert said.finish_reason == "length" and said.done is done


def test_a_cut_off_stream_keeps_what_was_said() -> None:
    said = AnswerCollector()
    for event in [Sources([SOURCE]), Token("The lim")]:
        assert said.feed(event) is event
    assert not said.complete and said.text == "The lim" and said.finish_reason == "cancelled"


def test_an_error_ends_the_answer_as_an_error() -> None:
    said = AnswerCollector().feed_all([Sources([]), Token("x"), ErrorEvent(Busy(3))])
    assert said.error is not None and said.error.code == "busy"
    assert not said.complete and said.finish_reason == "error"
