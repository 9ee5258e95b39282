"""What a request may send is decided from its headers (issue 12, defect 2), tested on a
raw socket against a real ``docqa serve`` (gunicorn), as an attacker would send it.

A refusal must arrive while the client has sent only its headers: the server read none
of the body, so nothing was spooled. Bodies without a length (chunked) are cut at the
same caps, and one over its cap is a 413, never a 400 from a silently truncated body.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from qa.limits import MAX_ANONYMOUS_BODY_BYTES, MAX_REQUEST_BODY_BYTES
from tests.web.live import LiveServer, copy_data_dir, create_api_token

UPLOAD_CAP = 1024 * 1024  # the server below runs with DOCQA_MAX_UPLOAD_MB=1
#: a refusal from the headers comes at once; a server waiting for the body never answers
ANSWER_WITHIN_S = 10.0


@dataclass
class Server:
    host: str
    port: int
    tokens: dict[str, str]
    handbook: int


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, seeded_template: Path) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("body-limits")
    data = copy_data_dir(seeded_template, root / "var")
    tokens = {name: create_api_token(data, name, "raw-socket") for name in ("bob", "editor")}
    with LiveServer(data, name="body-limits", threads=4, env={"DOCQA_MAX_UPLOAD_MB": "1"}) as live:
        handbook = live.collection_ids()["handbook"]
        yield Server("127.0.0.1", live.port, tokens, handbook)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.body)
        return data


def exchange(server: Server, head: str, body: bytes = b"") -> Reply:
    """Send ``head`` (request line and headers, CRLF-joined) and ``body``, then read the
    answer until the server closes or ANSWER_WITHIN_S passes."""
    started = time.monotonic()
    with socket.create_connection((server.host, server.port), timeout=ANSWER_WITHIN_S) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                if _complete(b"".join(chunks)):
                    break
        except ConnectionResetError:
            pass  # the server closed with our body unread: what it answered is complete
        except TimeoutError:
            pytest.fail(f"no answer within {ANSWER_WITHIN_S} s: the server waits for the body")
    raw = b"".join(chunks)
    head_part, _, rest = raw.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), raw[:200]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(int(lines[0].split()[1]), headers, rest, time.monotonic() - started)


def _complete(raw: bytes) -> bool:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(rest) >= int(value)
    return False


def request(
    path: str, content_type: str, length: int, *, token: str | None = None, method: str = "POST"
) -> str:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Accept: application/json",
        f"Content-Type: {content_type}",
        f"Content-Length: {length}",
    ]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return "\r\n".join(lines)


def chunked(path: str, content_type: str, *, token: str | None = None) -> str:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Accept: application/json",
        f"Content-Type: {content_type}",
        "Transfer-Encoding: chunked",
    ]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return "\r\n".join(lines)


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


MULTIPART = "multipart/form-data; boundary=x"
SIXTY_MB = 60 * 1024 * 1024


def refused_from_headers(reply: Reply, status: int, code: str) -> None:
    assert reply.status == status, (reply.status, reply.body[:300])
    assert reply.json()["error"]["code"] == code  # type: ignore[index]
    assert reply.headers.get("connection") == "close"  # the rest will not be read


# -- anonymous callers ---------------------------------------------------------------------


def test_anonymous_multipart_to_the_sign_in_form_is_refused_unread(server: Server) -> None:
    """The issue's case: 60 MB of multipart to /login was spooled before CSRF said 403."""
    reply = exchange(server, request("/login", MULTIPART, SIXTY_MB))
    refused_from_headers(reply, 415, "unsupported_media_type")


def test_anonymous_bodies_over_the_small_cap_are_413_unread(server: Server) -> None:
    form = "application/x-www-form-urlencoded"
    for path, content_type in [("/login", form), ("/api/v1/ask", "application/json")]:
        reply = exchange(server, request(path, content_type, MAX_ANONYMOUS_BODY_BYTES + 1))
        refused_from_headers(reply, 413, "too_large")
        assert f"the limit is {MAX_ANONYMOUS_BODY_BYTES} bytes" in reply.body.decode()


def test_anonymous_multipart_to_an_upload_endpoint_is_401_unread(server: Server) -> None:
    path = f"/api/v1/collections/{server.handbook}/documents"
    reply = exchange(server, request(path, MULTIPART, SIXTY_MB))
    refused_from_headers(reply, 401, "unauthenticated")


def test_anonymous_chunked_body_over_the_cap_is_413(server: Server) -> None:
    body = chunk(b"username=" + b"a" * MAX_ANONYMOUS_BODY_BYTES) + b"0\r\n\r\n"
    reply = exchange(server, chunked("/login", "application/x-www-form-urlencoded"), body)
    refused_from_headers(reply, 413, "too_large")


# -- signed-in callers -------------------------------------------------------------------------


def test_multipart_only_on_upload_endpoints(server: Server) -> None:
    bob = server.tokens["bob"]
    reply = exchange(server, request("/api/v1/chats", MULTIPART, 1000, token=bob))
    refused_from_headers(reply, 415, "unsupported_media_type")


def test_upload_without_the_write_grant_is_403_unread(server: Server) -> None:
    path = f"/api/v1/collections/{server.handbook}/documents"
    reply = exchange(server, request(path, MULTIPART, SIXTY_MB, token=server.tokens["bob"]))
    refused_from_headers(reply, 403, "forbidden")


def test_upload_over_its_cap_is_413_unread_and_under_it_accepted(server: Server) -> None:
    path = f"/api/v1/collections/{server.handbook}/documents"
    editor = server.tokens["editor"]
    reply = exchange(server, request(path, MULTIPART, UPLOAD_CAP + 1, token=editor))
    refused_from_headers(reply, 413, "too_large")
    part = (
        b'--x\r\nContent-Disposition: form-data; name="file"; filename="raw.md"\r\n'
        b"Content-Type: text/markdown\r\n\r\n# Raw socket\n\nUploaded by hand.\n\r\n--x--\r\n"
    )
    reply = exchange(server, request(path, MULTIPART, len(part), token=editor), part)
    assert reply.status == 202, reply.body[:300]


def test_chunked_json_over_the_cap_is_413_not_400(server: Server) -> None:
    """The issue's note: the body was cut at the cap and then failed to parse (400)."""
    question = json.dumps({"question": "x" * MAX_REQUEST_BODY_BYTES}).encode()
    body = chunk(question[: len(question) // 2]) + chunk(question[len(question) // 2 :])
    head = chunked("/api/v1/ask", "application/json", token=server.tokens["bob"])
    refused_from_headers(exchange(server, head, body + b"0\r\n\r\n"), 413, "too_large")


def test_chunked_json_under_the_cap_is_read_whole(server: Server) -> None:
    payload = json.dumps({"title": "sent in chunks"}).encode()
    body = chunk(payload[:10]) + chunk(payload[10:]) + b"0\r\n\r\n"
    head = chunked("/api/v1/chats", "application/json", token=server.tokens["bob"])
    reply = exchange(server, head, body)
    assert reply.status == 201, reply.body[:300]
    assert reply.json()["chat"]["title"] == "sent in chunks"  # type: ignore[index]
