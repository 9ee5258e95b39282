"""Reading question sets for ``docqa eval answers``, and matching gold answers.

* A SQuAD-format file (v1.1 and v2.0; XQuAD is v1.1)::

      {"version": "...", "data": [{"title": "...", "paragraphs": [
          {"context": "...", "qas": [{"id": "...", "question": "...",
                                      "answers": [{"text": "...", "answer_start": 0}],
                                      "is_impossible": false}]}]}]}

  becomes one ``Article`` per entry of ``data`` (its title and paragraph texts, in order)
  and one ``GoldQuestion`` per entry of ``qas``. A v2.0 question with ``is_impossible``
  has no answers (its ``plausible_answers`` are not gold).
* An off-topic question set: JSON lines, each an object whose ``question``, ``query`` or
  ``text`` is the question (so a BEIR ``queries.jsonl`` such as SciFact's works as is).

Every shape error is an ``InvalidInput`` naming the file and where in it.

Matching is SQuAD-style: both texts are normalized and the gold answer must appear in the
answer. English (neither text has CJK characters): lowercase, punctuation and the articles
a/an/the removed, whitespace collapsed, matched on word boundaries (so "308" does not match
"3080"). Chinese (either has CJK characters): whitespace and punctuation removed, matched
as a plain substring (Chinese has no spaces between words).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa.errors import InvalidInput
from qa.limits import MAX_EVAL_FILE_BYTES, MAX_QUESTION_CHARS

#: the fields of an off-topic line that may hold the question, in the order they are tried
QUESTION_FIELDS = ("question", "query", "text")


@dataclass(frozen=True)
class Article:
    title: str
    paragraphs: tuple[str, ...]

    @property
    def text(self) -> str:
        """The document's text: the title leads, paragraphs apart by blank lines, verbatim
        (so every gold answer's text is still in it)."""
        return "\n\n".join(p.strip() for p in self.paragraphs if p.strip())


@dataclass(frozen=True)
class GoldQuestion:
    id: str
    question: str
    answers: tuple[str, ...]
    impossible: bool


@dataclass(frozen=True)
class SquadSet:
    version: str
    articles: tuple[Article, ...]
    questions: tuple[GoldQuestion, ...]


# -- reading -----------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAX_EVAL_FILE_BYTES:
        raise InvalidInput(
            f"{path}: {size / 2**20:.0f} MiB is over the {MAX_EVAL_FILE_BYTES // 2**20} MiB"
            " limit of an evaluation file"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path}: not JSON: {exc}") from exc


def _text(value: Any, where: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise InvalidInput(f"{where}: expected a non-empty string")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidInput(f"{where}: expected a list")
    return value


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: expected an object")
    return value


def load_squad(path: Path) -> SquadSet:
    """The articles and questions of a SQuAD-format file (v1.1 or v2.0)."""
    path = Path(path)
    root = _read_json(path)
    if not isinstance(root, dict) or "data" not in root:
        raise InvalidInput(f'{path}: not a SQuAD file (expected an object with "data")')
    articles: list[Article] = []
    questions: list[GoldQuestion] = []
    seen: set[str] = set()
    for i, art in enumerate(_list(root["data"], f"{path}: data")):
        at = f"{path}: data[{i}]"
        art = _obj(art, at)
        title = art.get("title")
        title = title.strip() if isinstance(title, str) and title.strip() else f"article {i + 1}"
        paragraphs: list[str] = []
        for j, par in enumerate(_list(art.get("paragraphs"), f"{at}.paragraphs")):
            pat = f"{at}.paragraphs[{j}]"
            par = _obj(par, pat)
            paragraphs.append(_text(par.get("context"), f"{pat}.context"))
            for k, qa in enumerate(_list(par.get("qas", []), f"{pat}.qas")):
                question = _question(_obj(qa, f"{pat}.qas[{k}]"), f"{pat}.qas[{k}]")
                if question.id in seen:
                    raise InvalidInput(f"{pat}.qas[{k}]: question id {question.id!r} repeats")
                seen.add(question.id)
                questions.append(question)
        if paragraphs:
            articles.append(Article(title.replace("_", " "), tuple(paragraphs)))
    if not questions:
        raise InvalidInput(f"{path}: the file holds no questions")
    version = root.get("version")
    return SquadSet(str(version or "?"), tuple(articles), tuple(questions))


def _question(qa: dict[str, Any], where: str) -> GoldQuestion:
    qid = qa.get("id")
    if not isinstance(qid, str | int) or isinstance(qid, bool) or not str(qid).strip():
        raise InvalidInput(f"{where}.id: expected a non-empty id")
    text = _text(qa.get("question"), f"{where}.question").strip()
    if len(text) > MAX_QUESTION_CHARS:
        raise InvalidInput(f"{where}.question: longer than {MAX_QUESTION_CHARS} characters")
    impossible = qa.get("is_impossible", False)
    if not isinstance(impossible, bool):
        raise InvalidInput(f"{where}.is_impossible: expected true or false")
    answers: list[str] = []
    for n, ans in enumerate(_list(qa.get("answers", []), f"{where}.answers")):
        a = _text(_obj(ans, f"{where}.answers[{n}]").get("text"), f"{where}.answers[{n}].text")
        if a.strip() not in answers:
            answers.append(a.strip())
    if not impossible and not answers:
        raise InvalidInput(f"{where}: an answerable question without answers")
    # SQuAD 2.0 keeps "answers" empty for an impossible question; any there are not gold.
    return GoldQuestion(str(qid), text, () if impossible else tuple(answers), impossible)


def load_questions_jsonl(path: Path, *, limit: int | None = None) -> list[str]:
    """The questions of a JSON-lines file (``question``, ``query`` or ``text`` per line)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    if path.stat().st_size > MAX_EVAL_FILE_BYTES:
        raise InvalidInput(f"{path}: over the {MAX_EVAL_FILE_BYTES // 2**20} MiB limit")
    out: list[str] = []
    for n, line in _lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path}:{n}: not JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise InvalidInput(f"{path}:{n}: expected an object")
        field = next((f for f in QUESTION_FIELDS if f in obj), None)
        if field is None:
            raise InvalidInput(f"{path}:{n}: no {', '.join(QUESTION_FIELDS)} field")
        text = _text(obj[field], f"{path}:{n}: {field}").strip()
        if len(text) > MAX_QUESTION_CHARS:
            raise InvalidInput(f"{path}:{n}: longer than {MAX_QUESTION_CHARS} characters")
        out.append(text)
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise InvalidInput(f"{path}: the file holds no questions")
    return out


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if line.strip():
                    yield n, line
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: not UTF-8 text") from exc


# -- matching ----------------------------------------------------------------------------------

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
#: a citation marker of the answer text, which must not turn into a matching number
_CITATION = re.compile(r"\[\d+\]")


def _no_punct(text: str) -> str:
    # Unicode punctuation and symbols (SQuAD's string.punctuation is both: "$", "+" ...).
    return "".join(ch for ch in text if not unicodedata.category(ch).startswith(("P", "S")))


def is_chinese(text: str) -> bool:
    return _CJK.search(text) is not None


def normalize_en(text: str) -> str:
    text = _no_punct(unicodedata.normalize("NFKC", text).lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def normalize_zh(text: str) -> str:
    text = _no_punct(unicodedata.normalize("NFKC", text).lower())
    return "".join(text.split())


def contains_answer(text: str, golds: tuple[str, ...] | list[str]) -> bool:
    """Does ``text`` (an answer or a passage) contain one of the gold answers, normalized?"""
    text = _CITATION.sub(" ", text)
    chinese_text = is_chinese(text)
    for gold in golds:
        # "NFL" in a Chinese answer has no spaces around it: Chinese text matches as such.
        if chinese_text or is_chinese(gold):
            g = normalize_zh(gold)
            if g and g in normalize_zh(text):
                return True
        else:
            g = normalize_en(gold)
            if g and f" {g} " in f" {normalize_en(text)} ":
                return True
    return False


__all__ = [
    "QUESTION_FIELDS",
    "Article",
    "GoldQuestion",
    "SquadSet",
    "contains_answer",
    "is_chinese",
    "load_questions_jsonl",
    "load_squad",
    "normalize_en",
    "normalize_zh",
]
