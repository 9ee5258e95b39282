"""Query parameters of the HTML views and the client address.

JSON bodies and API query strings are read through their models (``web.contracts``).
"""

from __future__ import annotations

from flask import request

from qa.errors import InvalidInput


def arg_int(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"query parameter '{name}' must be an integer") from None
    if not lo <= value <= hi:
        raise InvalidInput(f"query parameter '{name}' must be between {lo} and {hi}")
    return value


def client_ip() -> str | None:
    # No proxy headers are trusted: behind a reverse proxy, configure it to set
    # REMOTE_ADDR (e.g. with a ProxyFix in front of the app).
    return request.remote_addr
