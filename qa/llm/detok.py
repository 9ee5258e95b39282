"""Incremental detokenization: emit text as soon as it is complete, never half a character.

Byte-level BPE splits a Chinese character or an emoji over several tokens, and a token's
text can depend on its neighbours (spaces, merges), so decoding tokens one by one is wrong.
Instead the window from ``prefix`` (a few tokens of left context) to the end is decoded and
only the part past what was already emitted is returned, and only once it does not end in
U+FFFD (an incomplete UTF-8 sequence).
"""

from __future__ import annotations

from typing import Protocol


class _Decoder(Protocol):
    def decode(self, token_ids: list[int], skip_special_tokens: bool = ...) -> str: ...


class IncrementalDetokenizer:
    def __init__(self, tokenizer: _Decoder) -> None:
        self._tok = tokenizer
        self._ids: list[int] = []
        self._prefix = 0  # start of the context window
        self._read = 0  # tokens before this index have been emitted

    def _decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        """Add one token; return the newly completed text (possibly "")."""
        self._ids.append(token_id)
        before = self._decode(self._ids[self._prefix : self._read])
        now = self._decode(self._ids[self._prefix :])
        if len(now) > len(before) and not now.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self._ids)
            return now[len(before) :]
        return ""

    def flush(self) -> str:
        """Whatever is left at the end of generation (an incomplete tail is dropped)."""
        before = self._decode(self._ids[self._prefix : self._read])
        now = self._decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return now[len(before) :].rstrip("\ufffd")
