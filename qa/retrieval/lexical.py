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
* Before jieba, each run of Chinese characters is converted Traditional -> Simplified by
  OpenCC's ``hk2s`` (character variants only: Hong Kong's variant forms such as 衞, then
  the standard Traditional -> Simplified tables, which also cover Taiwan's 裡 and 爲/為;
  never phrase localisation such as 軟體 -> 软件, which rewrites vocabulary, not script).
  jieba's dictionary is Simplified: unconverted, 資料庫 falls apart into single
  characters and a Traditional question never meets a Simplified document. Simplified
  text passes through unchanged (3 of XQuAD zh's 60,598 characters change: Traditional
  characters in the source). Not ``tw2s``: its variant table turns every 著 into the
  particle 着 unless a Traditional phrase says otherwise, so the Simplified 显著 would
  become 显着 while the Traditional 顯著 becomes 显著. The price: Taiwan's particle 著
  (看著) stays apart from 着 (看着). OpenCC converts ~20M characters a second, jieba
  ~0.3M: a few percent of the analysis. Only the terms are normalised; chunk text,
  quotes and highlights keep the original.

``analyze`` gives the word-level terms that extractive quotes, answer evidence and
summaries match on. ``bm25_terms``, for BM25 only, indexes Chinese the way CJK
search engines do, by character unigrams (function words dropped) and bigrams, and adds
jieba's words longer than two characters (数据库, 中华人民共和国), which no bigram holds;
its one- and two-character words are unigrams and bigrams already, so counting them
again would only double their weight. Bigrams find names and words that jieba splits
differently in question and passage. On XQuAD zh (nDCG@10, whole paragraphs, 1,190
questions) this scores 0.9664 against jieba alone 0.9610 and a plain character
unigram+bigram BM25 0.9666 (the difference is noise: 95% interval -0.003..+0.003); the
variant keeping every jieba word as well scored 0.9643. The other consumers keep word
terms: every Chinese sentence shares some character with a question, so a character
overlap would tell them nothing. As a set, ``bm25_terms`` holds every term of
``analyze``.

Terms never contain whitespace: the metadata DB stores them space-joined. ``analyze`` is
deterministic and safe to call from many threads (jieba and OpenCC are initialised once
under a lock and only read afterwards; Snowball stemmers keep state, so each thread has
its own). ``ANALYZER_VERSION`` names what the BM25 terms are; the index writer re-derives
terms stored by another version (see ``qa.retrieval.publish``).
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
_HAN_RE = re.compile(f"[{_HAN}]")
_TOKEN_RE = re.compile(
    rf"(?P<han>[{_HAN}]+)"
    r"|(?P<num>\d+(?:[.,]\d+)+)"
    rf"|(?P<word>[^\W_{_HAN}]+(?:['’][^\W_{_HAN}]+)*)"
)
_LATIN_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)*")

#: What ``bm25_terms`` emits for a text. Bump it whenever a change gives some text other
#: terms: terms stored in the metadata DB by another version are re-derived from the
#: chunk text before the next index is built. 1: jieba on the text as written; 2: OpenCC
#: Traditional -> Simplified, then character unigrams and bigrams plus jieba's longer words.
ANALYZER_VERSION = 2

#: OpenCC configurations applied in turn. ``hk2s`` = Hong Kong variants (衞生 -> 衛生),
#: then the standard Traditional -> Simplified tables (``t2s``, which misses 衞).
_OPENCC_CHAIN = ("hk2s",)

_jieba_lock = threading.Lock()
_jieba_tokenizer: Any = None
_opencc_lock = threading.Lock()
_opencc_converters: tuple[Any, ...] | None = None
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


def _converters() -> tuple[Any, ...]:
    global _opencc_converters
    if _opencc_converters is None:
        with _opencc_lock:
            if _opencc_converters is None:
                import opencc

                _opencc_converters = tuple(opencc.OpenCC(c) for c in _OPENCC_CHAIN)
    return _opencc_converters


def to_simplified(text: str) -> str:
    """``text`` with Traditional Chinese characters (any region's variants) made Simplified.

    For matching only: the result is what terms are made of, never shown. Text without
    Han characters is returned as it is, without calling OpenCC.
    """
    if not _HAN_RE.search(text):
        return text
    for converter in _converters():
        text = str(converter.convert(text))
    return text


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


def _han_grams(run: str) -> list[str]:
    """Character unigrams (function words dropped) and bigrams of a run of Han characters."""
    grams = [ch for ch in run if ch not in CHINESE_STOPWORDS]
    grams.extend(run[i : i + 2] for i in range(len(run) - 1))
    return grams


def _terms(text: str, *, grams: bool) -> list[str]:
    text = unicodedata.normalize("NFKC", text).casefold()
    terms: list[str] = []
    for m in _TOKEN_RE.finditer(text):
        kind, value = m.lastgroup, m.group()
        if kind == "han":
            run = to_simplified(value)
            if grams:
                terms.extend(t for t in _han_terms(run) if len(t) > 2)
                terms.extend(_han_grams(run))
            else:
                terms.extend(_han_terms(run))
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


def analyze(text: str) -> list[str]:
    """Word-level terms of ``text`` in order of appearance (duplicates kept, for counts)."""
    return _terms(text, grams=False)


def bm25_terms(text: str) -> list[str]:
    """What BM25 indexes a chunk and searches a question by: ``analyze``'s terms, except
    that each Chinese run (made Simplified) gives its jieba words longer than two
    characters and its character unigrams and bigrams."""
    return _terms(text, grams=True)


# What a Chinese question asks *with* rather than *about*: interrogatives, with the measure
# word or adjective they govern (哪一年, 几个, 多长; 多少度 keeps 度) and the 有 of 有多少, but
# not the 几 of 几乎 or the 哪 of 哪怕.
# Documents never contain them, so as terms they only dilute what the question is about.
# Matched on Simplified text; English question words are stopwords already.
_MEASURES = "个年天次位种条家颗件本部座所只名岁届场份类项"
_QUESTION_WORDS_RE = re.compile(
    f"有?(?:哪(?!怕)一?[{_MEASURES}里儿些]?|几(?!乎)[{_MEASURES}]?|多少[{_MEASURES}]?|多[长大高久远重宽深厚])"
    "|什么样|什么|甚么|为什么|为何|如何|怎么样|怎么|怎样|是否|何时|何地|何处|何种|何人"
    "|有没有|是不是|一共|谁|吗|呢"
)


def question_terms(question: str) -> list[str]:
    """``analyze``'s terms of a question, without the Chinese interrogatives it asks with:
    the terms of what it is about, which evidence weighs (``qa.answering.evidence``)."""
    simplified = to_simplified(unicodedata.normalize("NFKC", question))
    return analyze(_QUESTION_WORDS_RE.sub(" ", simplified))


def han_bigrams(text: str) -> set[str]:
    """Character bigrams of the Chinese runs of ``text``, made Simplified like every term
    (a one-character run as itself): they match where jieba segments two texts apart."""
    out: set[str] = set()
    for m in _TOKEN_RE.finditer(unicodedata.normalize("NFKC", text)):
        if m.lastgroup == "han":
            run = to_simplified(m.group())
            out |= {run[i : i + 2] for i in range(len(run) - 1)} if len(run) > 1 else {run}
    return out


def warm_up() -> None:
    """Load jieba's dictionary and OpenCC's tables now (about a second) instead of on the
    first Chinese text."""
    _jieba()
    _converters()
