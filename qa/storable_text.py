"""Text a database can store, and what to do with text it cannot.

Python strings may hold lone surrogates (JSON's ``"\\ud800"`` decodes to one) and NUL
characters. Neither survives a database: UTF-8 cannot encode a lone surrogate (SQLite and
psycopg raise, and a JSON column keeps the escape only to fail on the way out), and
PostgreSQL refuses NUL in text. The web boundary refuses such strings with a 400
(``web.contracts.base``); ``repaired`` mends values stored before it did.
"""

from __future__ import annotations

import re
from typing import Any

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def unstorable_reason(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None when it can."""
    match = _UNSTORABLE.search(text)
    if match is None:
        return None
    if match.group() == "\x00":
        return "holds a NUL character (\\u0000)"
    return f"holds a lone surrogate (\\u{ord(match.group()):04x}), which is not Unicode text"


def repaired(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, strings) with every unstorable character
    replaced by U+FFFD, so a stored value that predates the boundary check reads again."""
    if isinstance(value, str):
        return _UNSTORABLE.sub(REPLACEMENT, value)
    if isinstance(value, dict):
        return {repaired(k): repaired(v) for k, v in value.items()}
    if isinstance(value, list):
        return [repaired(v) for v in value]
    return value
