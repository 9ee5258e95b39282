"""Reading request bodies and parameters with clear 400s instead of KeyErrors."""

from __future__ import annotations

from typing import Any

from flask import request

from qa.errors import InvalidInput


def json_body() -> dict[str, Any]:
    """The JSON object the client sent; anything else is a clear InvalidInput."""
    if not request.is_json:
        raise InvalidInput("send a JSON object with Content-Type: application/json")
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise InvalidInput("the body is not a JSON object")
    return data


def field_str(
    data: dict[str, Any], name: str, *, required: bool = True, max_len: int = 10_000
) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise InvalidInput(f"'{name}' is required")
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"'{name}' must be a string")
    if len(value) > max_len:
        raise InvalidInput(f"'{name}' is longer than {max_len} characters")
    return value


def field_int(
    data: dict[str, Any],
    name: str,
    *,
    default: int | None = None,
    lo: int | None = None,
    hi: int | None = None,
) -> int | None:
    value = data.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"'{name}' must be an integer")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise InvalidInput(f"'{name}' must be between {lo} and {hi}")
    return value


def field_float(data: dict[str, Any], name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"'{name}' must be a number")
    return float(value)


def field_int_list(data: dict[str, Any], name: str, *, max_items: int = 1000) -> list[int] | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > max_items:
        raise InvalidInput(f"'{name}' must be a list of at most {max_items} integers")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int):
            raise InvalidInput(f"'{name}' must be a list of integers")
    return list(value)


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
