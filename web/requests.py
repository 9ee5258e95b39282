"""Ids in paths, query parameters of the HTML views, and the client address.

JSON bodies and API query strings are read through their models (``web.contracts``).
"""

from __future__ import annotations

from typing import Any

from flask import request
from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter, UnicodeConverter

from qa.errors import InvalidInput
from qa.limits import MAX_INT_ID
from qa.messages import N_
from qa.storable_text import unstorable_reason

#: digits of the largest id (MAX_INT_ID): a longer number is no id, whatever its value
_ID_DIGITS = len(str(MAX_INT_ID))


class IdConverter(IntegerConverter):
    """``<int:...>`` in every route (``create_app`` installs it as ``int``): an id the
    database's integer column can hold, 0..MAX_INT_ID. A larger number is a 404 (no such
    resource), instead of reaching a query that overflows (SQLite's 64-bit integers,
    PostgreSQL's 32-bit ``integer``) with a 500."""

    def to_python(self, value: str) -> Any:
        # NotFound, not ValidationError: werkzeug checks a rule's methods before its
        # converters, so "no match" would make a PATCH of a huge id a 405 (the GET rule
        # of the same path "matched"). Digits are counted before int(), which refuses
        # more than 4,300 of them (ValueError).
        digits = value.lstrip("0")
        if len(digits) > _ID_DIGITS or int(digits or "0") > MAX_INT_ID:
            raise NotFound(N_("no such id: the largest is %(max)s", max=MAX_INT_ID))
        return super().to_python(value)


class TextIdConverter(UnicodeConverter):
    """Every string path variable (``create_app`` installs it as ``default`` and
    ``string``): one holding a NUL (``%00``) names nothing a database could hold, so it is
    a 404 before a query (PostgreSQL refuses NUL in text: a 500, before)."""

    def to_python(self, value: str) -> Any:
        if unstorable_reason(value) is not None:
            raise NotFound(N_("no such id"))
        return super().to_python(value)


def arg_int(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(N_("query parameter '%(name)s' must be an integer", name=name)) from None
    if not lo <= value <= hi:
        raise InvalidInput(
            N_(
                "query parameter '%(name)s' must be between %(lo)s and %(hi)s",
                name=name,
                lo=lo,
                hi=hi,
            )
        )
    return value


def client_ip() -> str | None:
    # No proxy headers are trusted: behind a reverse proxy, configure it to set
    # REMOTE_ADDR (e.g. with a ProxyFix in front of the app).
    return request.remote_addr
