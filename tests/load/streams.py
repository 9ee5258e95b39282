"""Many concurrent answer streams against a running docqa, a full queue, then a cancel check.

    python -m tests.load.streams --url http://127.0.0.1:8000 --token dq_... \\
        --streams 20 --question "What is the hotel limit in London?"

Phase 1 opens ``--streams`` SSE streams on ``POST /api/v1/ask`` at once (one thread and
one connection each; ``--token`` may be given several times, streams take them in turn)
and sorts every outcome:

    completed      200 and a ``done`` event
    refused        503 before the stream, with or without a Retry-After header
    busy_in_stream 200, then an ``error`` event with code "busy" (the queue filled up
                   between the capacity check and joining the queue)
    error          any other status, an ``error`` event, or a stream that ended early
    timeout        no byte for ``--timeout`` seconds (a hung stream)

Phase 2 (with ``--max-queue N``, the server's DOCQA_MAX_QUEUE) fills the model and its N
queue places one stream at a time, sends one more request (503 + Retry-After expected),
lets the last queued client leave (is its place given back?) and then all the others.

Phase 3 (the cancel check) starts one long stream, reads to its first token, closes the
connection and polls ``/readyz`` until the model slot is free; the time is compared with
one decode step (1 / ``done.tokens_per_s`` of the phase-1 streams).

Only the standard library is used, so the script runs from any Python 3.11.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import socket
import statistics
import sys
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_QUESTION = "What is the hotel limit in London?"


# -- one stream ------------------------------------------------------------------------------


@dataclass
class StreamResult:
    index: int
    status: int = 0
    retry_after: str | None = None
    outcome: str = "pending"  # completed | refused | busy_in_stream | error | timeout
    detail: str = ""
    started: float = 0.0  # time.monotonic() when the request was sent
    sources_s: float | None = None  # from request start
    first_token_s: float | None = None
    end_s: float | None = None
    tokens: int = 0
    queued_positions: list[int] = field(default_factory=list)
    event_order: list[str] = field(default_factory=list)
    done: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @property
    def queue_wait_ms(self) -> float | None:
        """The server's own figure (``done.queue_wait_ms``)."""
        if self.done is None or self.done.get("queue_wait_ms") is None:
            return None
        return float(self.done["queue_wait_ms"])

    @property
    def client_queue_wait_s(self) -> float | None:
        """Client view: request start to first token, minus the model's own time to first
        token (prefill), i.e. retrieval + HTTP + waiting for the slot."""
        if self.first_token_s is None or self.done is None:
            return None
        model_ttft = self.done.get("time_to_first_token_ms")
        if model_ttft is None:
            return None
        return max(0.0, self.first_token_s - float(model_ttft) / 1000)


def _split_url(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise SystemExit(f"--url must be http://host:port, got {url!r}")
    return parts.hostname, parts.port or 80


def open_stream(
    url: str, token: str, body: dict[str, Any], timeout: float
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """``POST /api/v1/ask`` as an SSE client; the response is open at its headers."""
    host, port = _split_url(url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    payload = json.dumps(body).encode()
    conn.request(
        "POST",
        "/api/v1/ask",
        body=payload,
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "text/event-stream",
            "Content-Type": "application/json",
        },
    )
    return conn, conn.getresponse()


def iter_sse(resp: http.client.HTTPResponse) -> Any:
    """Yield ``(event_type, data)`` pairs as they arrive."""
    kind = "message"
    data: list[str] = []
    while True:
        raw = resp.readline()
        if not raw:
            return
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield kind, json.loads("\n".join(data))
            kind, data = "message", []
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


def run_stream(
    index: int,
    url: str,
    token: str,
    body: dict[str, Any],
    timeout: float,
    start_gate: threading.Barrier | None = None,
) -> StreamResult:
    result = StreamResult(index)
    if start_gate is not None:
        start_gate.wait()
    result.started = time.monotonic()
    conn: http.client.HTTPConnection | None = None
    try:
        conn, resp = open_stream(url, token, body, timeout)
        result.status = resp.status
        result.retry_after = resp.getheader("Retry-After")
        if resp.status != 200:
            text = resp.read().decode("utf-8", "replace")
            result.detail = text[:300]
            result.outcome = "refused" if resp.status == 503 else "error"
            return result
        for kind, data in iter_sse(resp):
            now = time.monotonic() - result.started
            if not result.event_order or result.event_order[-1] != kind:
                result.event_order.append(kind)
            if kind == "sources" and result.sources_s is None:
                result.sources_s = now
            elif kind == "queued":
                result.queued_positions.append(int(data.get("position", 0)))
            elif kind == "token":
                result.tokens += 1
                if result.first_token_s is None:
                    result.first_token_s = now
            elif kind == "done":
                result.done = data
            elif kind == "error":
                result.error = data
        result.end_s = time.monotonic() - result.started
        if result.error is not None:
            busy = result.error.get("code") == "busy"
            result.outcome = "busy_in_stream" if busy else "error"
            result.detail = json.dumps(result.error)[:300]
        elif result.done is not None:
            result.outcome = "completed"
        else:
            result.outcome = "error"
            result.detail = "the stream ended without a done event"
    except TimeoutError as exc:
        result.outcome = "timeout"
        result.detail = repr(exc)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        result.outcome = "error"
        result.detail = repr(exc)
    finally:
        if conn is not None:
            conn.close()
    return result


# -- phase 1: many streams at once -------------------------------------------------------------


@dataclass
class LoadReport:
    streams: list[StreamResult]
    wall_s: float

    def by_outcome(self, outcome: str) -> list[StreamResult]:
        return [s for s in self.streams if s.outcome == outcome]

    def counts(self) -> dict[str, int]:
        keys = ("completed", "refused", "busy_in_stream", "error", "timeout")
        return {k: len(self.by_outcome(k)) for k in keys}

    def statuses(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for s in self.streams:
            out[s.status] = out.get(s.status, 0) + 1
        return dict(sorted(out.items()))

    def decode_step_s(self) -> float | None:
        """One decode step, from the completed streams' ``done.tokens_per_s`` (median)."""
        rates = [
            float(s.done["tokens_per_s"])
            for s in self.by_outcome("completed")
            if s.done and s.done.get("tokens_per_s")
        ]
        return 1.0 / statistics.median(rates) if rates else None


def run_load(
    url: str,
    tokens: Sequence[str],
    *,
    streams: int = 20,
    question: str = DEFAULT_QUESTION,
    max_tokens: int = 200,
    temperature: float = 0.0,
    timeout: float = 120.0,
) -> LoadReport:
    if not tokens:
        raise ValueError("at least one API token is needed")
    body = {"question": question, "max_tokens": max_tokens, "temperature": temperature}
    results: list[StreamResult | None] = [None] * streams
    gate = threading.Barrier(streams)

    def worker(i: int) -> None:
        results[i] = run_stream(i, url, tokens[i % len(tokens)], body, timeout, gate)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(streams)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        # A read times out after ``timeout`` idle seconds; a thread alive long after that
        # means a stream that keeps trickling without end: count it as hung.
        t.join(timeout=max(0.0, started + 3 * timeout - time.monotonic()))
    wall = time.monotonic() - started
    out = []
    for i, r in enumerate(results):
        if r is None:
            r = StreamResult(i, outcome="timeout", detail="the stream never finished")
        out.append(r)
    return LoadReport(out, wall)


# -- phase 2: a full queue, probed and then left -------------------------------------------------


@dataclass
class FullQueueReport:
    positions: list[int]  # the place each queued stream was given (1..max_queue)
    queue_depth_full: int  # /readyz queue_depth with every place taken
    probe_status: int  # one more request: 503 expected
    probe_retry_after: str | None
    probe_detail: str
    queue_depth_before_leave: int
    leave_waited_s: float  # how long we watched after the last queued client left
    queue_depth_after_leave: int  # /readyz queue_depth after that (its place given back?)
    generating_after_leave: bool  # the first stream was still generating all along
    release_s: float  # every client gone -> model free and queue empty


def _shutdown(conn: http.client.HTTPConnection) -> None:
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def leave(conn: http.client.HTTPConnection) -> None:
    """Leave like a closed browser tab: shut the socket down, read nothing more."""
    _shutdown(conn)
    conn.close()


def full_queue_probe(
    url: str,
    tokens: Sequence[str],
    *,
    max_queue: int,
    question: str = DEFAULT_QUESTION,
    max_tokens: int = 4000,
    watch_leave_s: float = 3.5,  # two heartbeats of the server (1 s) plus slack
    timeout: float = 60.0,
) -> FullQueueReport:
    """Fill the model slot and every queue place one stream at a time, send one more
    request (it must be refused before its stream starts), let the last queued client
    leave and watch whether its place is given back, then let everyone leave."""
    wait_model_idle(url, timeout)
    body = {"question": question, "max_tokens": max_tokens, "temperature": 0.0}
    held: list[http.client.HTTPConnection] = []
    positions: list[int] = []
    first_ended = threading.Event()

    def drain(resp: http.client.HTTPResponse) -> None:
        # Read the generating stream to its end, so it never stalls on a full socket buffer
        # and we know whether it still holds the model.
        try:
            for kind, _data in iter_sse(resp):
                if kind in ("done", "error"):
                    break
        except (OSError, ValueError, http.client.HTTPException):
            pass  # the socket was shut down under the reader: the stream is over for us
        finally:
            first_ended.set()

    drainer: threading.Thread | None = None

    try:
        for i in range(max_queue + 1):
            conn, resp = open_stream(url, tokens[i % len(tokens)], body, timeout)
            held.append(conn)
            if resp.status != 200:
                raise RuntimeError(f"full-queue probe: stream {i} got HTTP {resp.status}")
            for kind, data in iter_sse(resp):
                if i == 0 and kind == "token":
                    drainer = threading.Thread(target=drain, args=(resp,), daemon=True)
                    drainer.start()
                    break  # the first stream generates
                if i > 0 and kind == "queued":
                    positions.append(int(data.get("position", 0)))
                    break  # the others wait
                if kind in ("done", "error"):
                    raise RuntimeError(f"full-queue probe: stream {i} ended early: {data}")
        depth_full = int(readyz_model(url).get("queue_depth", 0))
        conn, resp = open_stream(url, tokens[-1], body, timeout)
        probe_status = resp.status
        probe_retry = resp.getheader("Retry-After")
        probe_detail = resp.read(2000).decode("utf-8", "replace")
        conn.close()
        # The last queued client leaves: is its place given back while the others wait?
        depth_before = int(readyz_model(url).get("queue_depth", 0))
        leave(held.pop())
        left_at = time.monotonic()
        depth_after = depth_before
        while time.monotonic() - left_at < watch_leave_s:
            depth_after = int(readyz_model(url).get("queue_depth", 0))
            if depth_after < depth_before:
                break
            time.sleep(0.02)
        leave_waited = time.monotonic() - left_at
        # Only meaningful while nobody moved up: the first stream is still generating.
        generating = not first_ended.is_set()
    finally:
        gone_at = time.monotonic()
        for held_conn in held:
            _shutdown(held_conn)
        if drainer is not None:
            drainer.join(timeout)  # it sees the shut-down socket and stops reading
        for held_conn in held:
            held_conn.close()
    wait_model_idle(url, timeout)
    return FullQueueReport(
        positions=positions,
        queue_depth_full=depth_full,
        probe_status=probe_status,
        probe_retry_after=probe_retry,
        probe_detail=probe_detail[:300],
        queue_depth_before_leave=depth_before,
        leave_waited_s=leave_waited,
        queue_depth_after_leave=depth_after,
        generating_after_leave=generating,
        release_s=time.monotonic() - gone_at,
    )


# -- phase 3: a client that leaves frees the model ---------------------------------------------


@dataclass
class CancelReport:
    first_token_s: float  # request start -> first token
    tokens_before_close: int
    close_to_free_s: float  # connection closed -> /readyz reports the model free
    polls: int
    poll_rtt_s: float  # median /readyz round trip while polling
    decode_step_s: float | None
    busy_before_close: bool
    queue_depth_after: int

    @property
    def steps(self) -> float | None:
        if not self.decode_step_s:
            return None
        return self.close_to_free_s / self.decode_step_s


def readyz_model(url: str, timeout: float = 5.0) -> dict[str, Any]:
    host, port = _split_url(url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/readyz")
        data = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    model: dict[str, Any] = data["checks"]["model"]
    return model


def wait_model_idle(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = readyz_model(url)
        if not state.get("busy") and not state.get("queue_depth"):
            return
        time.sleep(0.05)
    raise TimeoutError(f"the model stayed busy for {timeout:.0f}s")


def cancel_check(
    url: str,
    token: str,
    *,
    question: str = DEFAULT_QUESTION,
    max_tokens: int = 2000,
    decode_step_s: float | None = None,
    timeout: float = 60.0,
    tokens_before_close: int = 3,
) -> CancelReport:
    """Start a long stream, leave after a few tokens, time until the slot is free."""
    wait_model_idle(url, timeout)
    body = {"question": question, "max_tokens": max_tokens, "temperature": 0.0}
    started = time.monotonic()
    conn, resp = open_stream(url, token, body, timeout)
    if resp.status != 200:
        conn.close()
        raise RuntimeError(f"cancel check: the stream was refused ({resp.status})")
    seen = 0
    first_token_s = 0.0
    for kind, _data in iter_sse(resp):
        if kind == "token":
            if seen == 0:
                first_token_s = time.monotonic() - started
            seen += 1
            if seen >= tokens_before_close:
                break
        elif kind in ("done", "error"):
            conn.close()
            raise RuntimeError(f"cancel check: the stream ended ({kind}) before the close")
    busy_before = bool(readyz_model(url).get("busy"))
    closed_at = time.monotonic()
    leave(conn)
    resp.close()
    polls = 0
    rtts: list[float] = []
    while True:
        t = time.monotonic()
        state = readyz_model(url)
        rtts.append(time.monotonic() - t)
        polls += 1
        if not state.get("busy"):
            free_at = time.monotonic()
            break
        if time.monotonic() - closed_at > timeout:
            raise TimeoutError(f"cancel check: the model was still busy after {timeout:.0f}s")
        time.sleep(0.005)
    return CancelReport(
        first_token_s=first_token_s,
        tokens_before_close=seen,
        close_to_free_s=free_at - closed_at,
        polls=polls,
        poll_rtt_s=statistics.median(rtts),
        decode_step_s=decode_step_s,
        busy_before_close=busy_before,
        queue_depth_after=int(state.get("queue_depth", 0)),
    )


# -- the report ------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def format_report(
    load: LoadReport, full: FullQueueReport | None = None, cancel: CancelReport | None = None
) -> str:
    done = load.by_outcome("completed")
    ttft = [s.first_token_s for s in done if s.first_token_s is not None]
    sources = [s.sources_s for s in load.streams if s.sources_s is not None]
    server_wait = [s.queue_wait_ms / 1000 for s in done if s.queue_wait_ms is not None]
    client_wait = [w for s in done if (w := s.client_queue_wait_s) is not None]
    model_ttft = [
        float(s.done["time_to_first_token_ms"]) / 1000
        for s in done
        if s.done and s.done.get("time_to_first_token_ms") is not None
    ]
    rates = [float(s.done["tokens_per_s"]) for s in done if s.done and s.done.get("tokens_per_s")]
    refused = load.by_outcome("refused")
    retry_values = [s.retry_after for s in refused if s.retry_after]
    lines = [
        f"docqa load report: {len(load.streams)} concurrent streams, wall {load.wall_s:.1f} s",
        "outcomes: " + ", ".join(f"{k} {v}" for k, v in load.counts().items()),
        "HTTP statuses: " + ", ".join(f"{k}: {v}" for k, v in load.statuses().items()),
        f"503 with Retry-After: {len(retry_values)} of {len(refused)}"
        + (f" (values {sorted(set(retry_values))})" if retry_values else ""),
        "",
        f"{'metric (completed streams)':<44}{'p50':>10}{'p95':>10}{'max':>10}",
    ]

    def row(name: str, values: Sequence[float]) -> None:
        lines.append(
            f"{name:<44}{_ms(percentile(values, 50)):>10}{_ms(percentile(values, 95)):>10}"
            f"{_ms(max(values) if values else None):>10}"
        )

    row("sources event, from request start (all 200s)", sources)
    row("time to first token, client, from request", ttft)
    row("queue wait, server (done.queue_wait_ms)", server_wait)
    row("queue wait, client (first token - prefill)", client_wait)
    row("model time to first token (done)", model_ttft)
    if rates:
        lines.append(
            f"decode speed (done.tokens_per_s): median {statistics.median(rates):.0f} tokens/s, "
            f"one step {_ms(load.decode_step_s())}"
        )
    queued = [max(s.queued_positions) for s in done if s.queued_positions]
    if queued:
        lines.append(f"deepest queue position reported: {max(queued)}")
    problems = [s for s in load.streams if s.outcome in ("error", "timeout", "busy_in_stream")]
    for s in problems[:10]:
        lines.append(f"  stream {s.index}: {s.outcome} (HTTP {s.status}) {s.detail}")
    if full is not None:
        lines += [
            "",
            f"full queue (1 generating + {len(full.positions)} queued, one stream at a time):",
            f"  queue positions given: {full.positions}; "
            f"/readyz queue_depth {full.queue_depth_full}",
            f"  one more request: HTTP {full.probe_status}, Retry-After {full.probe_retry_after}",
            f"  last queued client left: queue_depth {full.queue_depth_before_leave} -> "
            f"{full.queue_depth_after_leave} within {_ms(full.leave_waited_s)} "
            f"(first stream still generating: {full.generating_after_leave})",
            f"  everyone left -> model free, queue empty: {_ms(full.release_s)}",
        ]
    if cancel is not None:
        lines += [
            "",
            "cancel check (client leaves after its first tokens):",
            f"  first token after {_ms(cancel.first_token_s)}, "
            f"closed after {cancel.tokens_before_close} tokens "
            f"(model busy before close: {cancel.busy_before_close})",
            f"  close -> /readyz model free: {_ms(cancel.close_to_free_s)} "
            f"({cancel.polls} polls, median poll round trip {_ms(cancel.poll_rtt_s)})",
        ]
        if cancel.decode_step_s:
            lines.append(
                f"  one decode step {_ms(cancel.decode_step_s)}: "
                f"close -> free = {cancel.steps:.1f} decode steps (incl. polling)"
            )
        lines.append(f"  queue depth after: {cancel.queue_depth_after}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="http://host:port of docqa serve")
    parser.add_argument(
        "--token", action="append", required=True, help="API token (repeat for several)"
    )
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--question", default=DEFAULT_QUESTION)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=120.0, help="idle read timeout (s)")
    parser.add_argument(
        "--max-queue",
        type=int,
        default=None,
        help="the server's DOCQA_MAX_QUEUE: also probe a full queue (1 + N streams, then one more)",
    )
    parser.add_argument("--no-cancel-check", action="store_true")
    parser.add_argument("--cancel-max-tokens", type=int, default=2000)
    args = parser.parse_args(argv)
    load = run_load(
        args.url,
        args.token,
        streams=args.streams,
        question=args.question,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        timeout=args.timeout,
    )
    full = None
    if args.max_queue is not None:
        full = full_queue_probe(
            args.url,
            args.token,
            max_queue=args.max_queue,
            question=args.question,
            timeout=args.timeout,
        )
    cancel = None
    if not args.no_cancel_check:
        cancel = cancel_check(
            args.url,
            args.token[0],
            question=args.question,
            max_tokens=args.cancel_max_tokens,
            decode_step_s=load.decode_step_s(),
            timeout=args.timeout,
        )
    print(format_report(load, full, cancel))
    bad = load.counts()["error"] + load.counts()["timeout"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
