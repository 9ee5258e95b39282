"""20 concurrent answer streams against a real ``docqa serve`` with the tiny streaming Qwen3
and a model queue of 8, then a client that leaves mid-answer.

Asserts the invariants, not speed: every stream completes or is refused with 503 +
Retry-After before it starts, nothing fails or hangs, the queue bound is reached, and a
client that goes away frees the model within a few decode steps. The measured numbers are
printed (``pytest -s``) and written to $DOCQA_TEST_ARTIFACTS/load-report.txt.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.load.streams import (
    CancelReport,
    FullQueueReport,
    LoadReport,
    cancel_check,
    format_report,
    full_queue_probe,
    run_load,
)
from tests.web.conftest import seeded_template  # noqa: F401  (session fixture, used below)
from tests.web.live import (
    LiveServer,
    artifacts_dir,
    build_streaming_model,
    copy_data_dir,
    create_api_token,
)

# Latency bounds: run alone on the CPU, after the parallel part of make test.
pytestmark = [pytest.mark.slow, pytest.mark.serial]

STREAMS = 20
MAX_QUEUE = 8
MAX_TOKENS = 100  # ~1 s per answer on two cores: 20 arrivals overflow 1 + 8 places
QUESTION = "What is the hotel limit in London?"
#: "within a token": close -> free may take this many decode steps (the server notices the
#: closed socket when a write fails, usually at the first or second token after the close)
CANCEL_STEPS = 5
#: plus this much for the /readyz polling and thread scheduling on a loaded machine
CANCEL_SLACK_S = 0.25


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    seeded_template: Path,  # noqa: F811
) -> Iterator[tuple[LiveServer, list[str]]]:
    model = build_streaming_model(tmp_path_factory.getbasetemp())
    data = copy_data_dir(seeded_template, tmp_path_factory.mktemp("load") / "var")
    tokens = [create_api_token(data, "alice", f"load-{i}") for i in range(STREAMS)]
    live = LiveServer(data, name="load", model_dir=model, env={"DOCQA_MAX_QUEUE": str(MAX_QUEUE)})
    with live:
        yield live, tokens


Results = tuple[LoadReport, FullQueueReport, CancelReport]


@pytest.fixture(scope="module")
def results(server: tuple[LiveServer, list[str]]) -> Results:
    live, tokens = server
    assert live.model_state()["mode"] == "generative"
    load = run_load(
        live.url, tokens, streams=STREAMS, question=QUESTION, max_tokens=MAX_TOKENS, timeout=120
    )
    full = full_queue_probe(live.url, tokens, max_queue=MAX_QUEUE, question=QUESTION)
    cancel = cancel_check(
        live.url, tokens[0], question=QUESTION, decode_step_s=load.decode_step_s()
    )
    report = format_report(load, full, cancel)
    (artifacts_dir() / "load-report.txt").write_text(report + "\n")
    print("\n" + report)
    return load, full, cancel


def test_every_stream_completes_or_is_refused_before_it_starts(
    results: Results,
) -> None:
    load, _, _ = results
    counts = load.counts()
    hung = load.by_outcome("timeout")
    assert not hung, [f"stream {s.index}: {s.detail}" for s in hung]
    errors = load.by_outcome("error")
    assert not errors, [f"stream {s.index}: HTTP {s.status} {s.detail}" for s in errors]
    assert set(load.statuses()) <= {200, 503}, load.statuses()
    for s in load.by_outcome("refused"):
        assert s.retry_after is not None and s.retry_after.isdigit(), (s.index, s.retry_after)
        assert int(s.retry_after) > 0
    # The queue bound was reached: one generating + MAX_QUEUE waiting, the rest turned away.
    assert counts["completed"] >= MAX_QUEUE + 1, counts
    turned_away = counts["refused"] + counts["busy_in_stream"]
    assert turned_away >= 1, f"20 streams never filled a queue of {MAX_QUEUE}: {counts}"
    # Over capacity must be a 503 with Retry-After before the stream, never a 200 whose
    # stream then says "busy" (a client cannot retry on that status).
    assert counts["busy_in_stream"] == 0, (
        f"{counts['busy_in_stream']} of {STREAMS} streams got 200 and then a 'busy' error "
        f"event instead of 503 + Retry-After: {counts}"
    )


def test_completed_streams_send_sources_first_and_report_their_timings(
    results: Results,
) -> None:
    load, _, _ = results
    completed = load.by_outcome("completed")
    assert completed
    for s in completed:
        order = [k for k in s.event_order if k != "queued"]
        assert order[0] == "sources" and order[-2:] == ["citations", "done"], s.event_order
        assert set(order[1:-2]) == {"token"}, s.event_order
        assert s.sources_s is not None and s.first_token_s is not None
        assert s.sources_s <= s.first_token_s
        assert s.done is not None
        assert s.done["mode"] == "generative"
        assert s.done["finish_reason"] == "length"  # greedy, no end token: max_tokens
        assert s.done["completion_tokens"] == MAX_TOKENS
        assert s.done["queue_wait_ms"] >= 0 and s.done["tokens_per_s"] > 0
    # Streams that waited were told their place in the queue, and the places go down to 1.
    waited = [s for s in completed if s.queued_positions]
    assert len(waited) >= MAX_QUEUE - 1, [s.queued_positions for s in completed]
    for s in waited:
        assert s.queued_positions[-1] == 1
        assert s.queued_positions == sorted(s.queued_positions, reverse=True)


def test_a_full_queue_refuses_the_next_request_with_503_and_retry_after(
    results: Results,
) -> None:
    _, full, _ = results
    assert full.positions == list(range(1, MAX_QUEUE + 1)), full.positions
    assert full.queue_depth_full == MAX_QUEUE
    assert full.probe_status == 503, (full.probe_status, full.probe_detail)
    assert full.probe_retry_after is not None and full.probe_retry_after.isdigit()
    assert int(full.probe_retry_after) > 0
    assert '"busy"' in full.probe_detail, full.probe_detail


def test_a_queued_client_that_leaves_gives_its_place_back(results: Results) -> None:
    """qa.llm.slot: "A waiter whose client went away ... leaves the queue immediately"."""
    _, full, _ = results
    assert full.generating_after_leave, "the first stream ended: the check proves nothing"
    assert full.queue_depth_after_leave == full.queue_depth_before_leave - 1, (
        f"the queue still held {full.queue_depth_after_leave} of "
        f"{full.queue_depth_before_leave} places {full.leave_waited_s:.1f}s after a queued "
        "client left (its place is only given back when its position changes)"
    )
    assert full.release_s < 10, f"everyone left, model busy for {full.release_s:.1f}s more"


def test_a_client_that_leaves_frees_the_model_within_a_few_tokens(
    results: Results,
) -> None:
    _, _, cancel = results
    assert cancel.busy_before_close, "the model was not generating when the client left"
    assert cancel.decode_step_s is not None and cancel.decode_step_s > 0
    bound = CANCEL_STEPS * cancel.decode_step_s + CANCEL_SLACK_S
    assert cancel.close_to_free_s <= bound, (
        f"the slot was freed {cancel.close_to_free_s * 1000:.0f} ms after the client left; "
        f"bound {bound * 1000:.0f} ms ({CANCEL_STEPS} decode steps of "
        f"{cancel.decode_step_s * 1000:.1f} ms + {CANCEL_SLACK_S * 1000:.0f} ms polling)"
    )
    assert cancel.queue_depth_after == 0
