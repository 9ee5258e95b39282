"""Text -> lexical terms for BM25: the same analysis for indexed chunks and for queries.

* Unicode NFKC then case folding, so full-width letters and digits, ligatures and case
  variants meet the same term.
* Latin words: English stopwords removed, then Snowball (Porter 2) stemming; words in other
  alphabetic scripts are kept whole (no stemmer would be right for all of them).
* Numbers are kept, decimals included (``3.14``, ``1,000``), because users search for
  figures, versions and article numbers.
* Runs of Chinese characters are segmented by jieba in *search-engine mode*: besides each
  word it also emits the dictionary words inside long compounds (中华人民共和国 -> 中华,
  人民, 共和国, ...). Queries are short and often name a part of a compound the document
  writes in full; emitting the parts makes those match. The cost, longer documents in
  BM25's length normalisation, applies to every Chinese chunk alike. Single-character
  function words (的, 了, 是, ...) and punctuation are dropped.

Terms never contain whitespace: the metadata DB stores them space-joined. ``analyze`` is
deterministic and safe to call from many threads (jieba is initialised once under a lock
and only read afterwards; Snowball stemmers keep state, so each thread has its own).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any

import snowballstemmer

_ENGLISH_STOPWORDS_TEXT = """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not of off on once only or
    other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your
    yours yourself yourselves"""
ENGLISH_STOPWORDS = frozenset(_ENGLISH_STOPWORDS_TEXT.split())

# Single characters that carry no meaning on their own in Chinese text.
CHINESE_STOPWORDS = frozenset("的了是在和与及或也就都而着把被之其这那个吗呢吧啊么")

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
_TOKEN_RE = re.compile(
    rf"(?P<han>[{_HAN}]+)"
    r"|(?P<num>\d+(?:[.,]\d+)+)"
    rf"|(?P<word>[^\W_{_HAN}]+(?:['’][^\W_{_HAN}]+)*)"
)
_LATIN_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)*")

_jieba_lock = threading.Lock()
_jieba_tokenizer: Any = None
_local = threading.local()


def _jieba_cache_dir() -> Path:
    """A private directory for jieba's dictionary cache.

    jieba defaults to the shared temp dir and unmarshals whatever file it finds there; a
    per-user directory (mode 0700) keeps other users from planting one.
    """
    base = os.environ.get("DOCQA_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    path = root / "docqa" / "jieba"
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="docqa-jieba-"))


def _jieba() -> Any:
    global _jieba_tokenizer
    if _jieba_tokenizer is None:
        with _jieba_lock:
            if _jieba_tokenizer is None:
                import jieba

                jieba.setLogLevel(logging.WARNING)  # it logs to stderr while building its cache
                tokenizer = jieba.Tokenizer()
                tokenizer.tmp_dir = str(_jieba_cache_dir())
                tokenizer.initialize()
                _jieba_tokenizer = tokenizer
    return _jieba_tokenizer


def _stemmer() -> Any:
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = snowballstemmer.stemmer("english")
    return stemmer


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return str(_stemmer().stemWord(word))


def _latin_term(word: str) -> str | None:
    word = word.replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    word = word.replace("'", "")
    if not word or word in ENGLISH_STOPWORDS:
        return None
    return _stem(word)


def _han_terms(run: str) -> list[str]:
    out = []
    for term in _jieba().cut_for_search(run):
        if len(term) == 1 and (term in CHINESE_STOPWORDS or not term.isalnum()):
            continue
        if not term.isspace():
            out.append(term)
    return out


def analyze(text: str) -> list[str]:
    """Lexical terms of ``text`` in order of appearance (duplicates kept, for term counts)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    terms: list[str] = []
    for m in _TOKEN_RE.finditer(text):
        kind, value = m.lastgroup, m.group()
        if kind == "han":
            terms.extend(_han_terms(value))
        elif kind == "num":
            terms.append(value)
        elif _LATIN_WORD_RE.fullmatch(value.replace("’", "'")):
            term = _latin_term(value)
            if term:
                terms.append(term)
        else:
            # Other scripts (Cyrillic, Greek, Hangul, kana, accented Latin ...) stay whole;
            # apostrophes are dropped so "l’été" and "l'été" meet.
            terms.append(value.replace("’", "").replace("'", ""))
    return terms


def warm_up() -> None:
    """Load jieba's dictionary now (about a second) instead of on the first Chinese text."""
    _jieba()
