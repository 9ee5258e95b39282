"""``docqa eval answers``: answer quality and latency on a SQuAD-format file.

The file's articles become one collection, one document per article (title, then the
paragraphs verbatim), through the same pieces as ``docqa eval retrieval``
(``build_eval_index``): a private SQLite DB and index under ``<data_dir>/eval/`` keyed by
the file's content, the model and the chunking, reused by the next run; the product's own
DB is never touched.

Every question then goes through the answer service exactly as ``docqa ask`` and the
portal build it (``build_answer_service``: same retriever settings, reranker, extractive
answer or model), with ``retrieval_k`` passages, greedy decoding when a model answers. For
each question it records the answer text, the ``outcome`` of the ``done`` event
("answered" or "not_found", ``qa.answering.decline``), the
citations and the wall time of the whole stream. The figures:

* answer recall: answerable questions whose answer was given ("answered") and contains a
  gold answer (``ingest.squad.contains_answer``: SQuAD normalization; Chinese without
  spaces and punctuation);
* citation precision: of the answered questions that cite a source, those whose first
  cited passage contains a gold answer;
* false declines: answerable questions answered "not_found";
* SQuAD 2.0 ``is_impossible`` questions: their decline rate, reported on its own;
* off-topic declines: the share of each off-topic set (JSON lines) declined;
* p50/p95 latency over every question asked.

``limit`` takes the first N questions of the SQuAD file and of each off-topic set; all
articles are indexed either way, so the other articles stay as distractors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ingest.evaluation import (
    EVAL_COLLECTION,
    BeirDoc,
    BuiltIndex,
    ProgressFn,
    build_eval_index,
    eval_folder,
    file_digest,
)
from ingest.squad import GoldQuestion, SquadSet, contains_answer, load_questions_jsonl, load_squad
from qa.answering.answer_service import AnswerService, AskOptions
from qa.answering.events import AnswerCollector
from qa.answering.extractive import EXTRACTIVE_LABELS
from qa.errors import DocqaError, InvalidInput, ModelNotBuilt
from qa.limits import MAX_EVAL_QUESTIONS
from qa.llm.manifest import MANIFEST
from qa.retrieval.embedder import Embedder, get_embedder
from qa.retrieval.ir_metrics import percentile
from qa.settings import Settings
from qa.store.catalog import get_collection
from qa.store.db.engine import Database

log = logging.getLogger(__name__)

Mode = Literal["auto", "extractive", "generative"]
MODES: tuple[Mode, ...] = ("auto", "extractive", "generative")
Kind = Literal["answerable", "impossible", "off_topic"]
_NO_MODEL = "no model is built in {}: build one with `docqa model build` or use --mode extractive"


@dataclass(frozen=True)
class Asked:
    """One question asked, and what came back."""

    kind: Kind
    #: "squad" for the SQuAD file's questions, else the off-topic file's name
    set_name: str
    question: str
    #: "answered", "not_found" or "error"
    outcome: str
    answer: str
    latency_ms: float
    #: gold in the answer (answerable questions only)
    hit: bool | None = None
    #: the first cited passage holds a gold answer (answerable, answered and citing only)
    first_citation_hit: bool | None = None
    error: str | None = None
    #: tokens of the prompt the model read (generative answers only)
    prompt_tokens: int | None = None


@dataclass(frozen=True)
class OffTopicScores:
    name: str
    questions: int
    declined: int

    @property
    def decline_rate(self) -> float:
        return self.declined / self.questions if self.questions else 0.0


@dataclass(frozen=True)
class AnswerEvalReport:
    dataset: str
    version: str
    mode: str
    model_id: str
    documents: int
    chunks: int
    index_dir: Path
    index_cached: bool
    answerable: int
    answer_recall: float
    #: answered questions that cite a source (the denominator of citation precision)
    cited: int
    citation_precision: float | None
    false_declines: int
    impossible: int
    impossible_declines: int
    off_topic: tuple[OffTopicScores, ...]
    errors: int
    latency_p50_ms: float
    latency_p95_ms: float
    results: tuple[Asked, ...] = field(repr=False)
    #: prompt tokens per question the model answered (None when none was generated)
    prompt_tokens_mean: float | None = None
    prompt_tokens_p95: float | None = None

    @property
    def false_decline_rate(self) -> float:
        return self.false_declines / self.answerable if self.answerable else 0.0

    @property
    def impossible_decline_rate(self) -> float | None:
        return self.impossible_declines / self.impossible if self.impossible else None

    @property
    def off_topic_questions(self) -> int:
        return sum(s.questions for s in self.off_topic)

    @property
    def off_topic_decline_rate(self) -> float | None:
        n = self.off_topic_questions
        return sum(s.declined for s in self.off_topic) / n if n else None

    def to_json(self) -> dict[str, Any]:
        """The figures for machines (``--json``), without the per-question results."""
        return {
            "dataset": self.dataset,
            "version": self.version,
            "mode": self.mode,
            "model_id": self.model_id,
            "documents": self.documents,
            "chunks": self.chunks,
            "index_dir": str(self.index_dir),
            "index_cached": self.index_cached,
            "answerable": self.answerable,
            "answer_recall": _round(self.answer_recall),
            "cited": self.cited,
            "citation_precision": _round(self.citation_precision),
            "false_declines": self.false_declines,
            "false_decline_rate": _round(self.false_decline_rate),
            "impossible": self.impossible,
            "impossible_declines": self.impossible_declines,
            "impossible_decline_rate": _round(self.impossible_decline_rate),
            "off_topic": [
                {**asdict(s), "decline_rate": _round(s.decline_rate)} for s in self.off_topic
            ],
            "off_topic_questions": self.off_topic_questions,
            "off_topic_decline_rate": _round(self.off_topic_decline_rate),
            "errors": self.errors,
            "latency_p50_ms": round(self.latency_p50_ms, 1),
            "latency_p95_ms": round(self.latency_p95_ms, 1),
            "prompt_tokens_mean": _round(self.prompt_tokens_mean),
            "prompt_tokens_p95": _round(self.prompt_tokens_p95),
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


# -- the collection ------------------------------------------------------------------------------


def _articles_as_docs(squad: SquadSet) -> Callable[[], Iterator[BeirDoc]]:
    def docs() -> Iterator[BeirDoc]:
        for n, art in enumerate(squad.articles, 1):
            # The number keeps two articles of the same title two documents.
            yield BeirDoc(f"{n:04d} {art.title}", art.title, art.text)

    return docs


def _check_limit(limit: int | None) -> None:
    if limit is not None and not 1 <= limit <= MAX_EVAL_QUESTIONS:
        raise InvalidInput(f"the limit must be between 1 and {MAX_EVAL_QUESTIONS}, got {limit}")


# -- asking --------------------------------------------------------------------------------------


def _answer_text(text: str) -> str:
    """The answer without the extractive label, whose own words must not match a gold."""
    for label in EXTRACTIVE_LABELS.values():
        text = text.removeprefix(label)
    return text.strip()


def _ask(
    service: AnswerService,
    question: str,
    coll_id: int,
    options: AskOptions,
    kind: Kind,
    set_name: str,
    gold: GoldQuestion | None,
) -> Asked:
    started = time.perf_counter()
    said = AnswerCollector()
    try:
        said.feed_all(service.ask(question, [coll_id], options))
    except DocqaError as exc:  # refused before the stream (a question over the limits)
        return Asked(
            kind, set_name, question, "error", "", _ms(started), error=f"{exc.code}: {exc}"
        )
    latency = _ms(started)
    if said.error is not None:
        return Asked(
            kind, set_name, question, "error", said.text, latency, error=said.error.message
        )
    outcome = said.outcome
    if outcome is None or said.done is None:  # no error and no done: a stream that broke off
        return Asked(kind, set_name, question, "error", said.text, latency, error="cut off")
    answer = _answer_text(said.text)
    prompt = said.done.prompt_tokens
    if gold is None or gold.impossible:
        return Asked(kind, set_name, question, outcome, answer, latency, prompt_tokens=prompt)
    answered = outcome == "answered"
    hit = answered and contains_answer(answer, gold.answers)
    first_hit = None
    cites = said.citations.citations if said.citations is not None else []
    if answered and cites:
        n = cites[0]["n"]
        source = next((s for s in said.sources if s["n"] == n), None)
        first_hit = source is not None and contains_answer(str(source["text"]), gold.answers)
    return Asked(
        kind, set_name, question, outcome, answer, latency, hit, first_hit, prompt_tokens=prompt
    )


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def evaluate_answers(
    squad_file: Path,
    *,
    settings: Settings,
    off_topic: Sequence[Path] = (),
    limit: int | None = None,
    mode: Mode = "auto",
    embedder: Embedder | None = None,
    progress: ProgressFn | None = None,
) -> AnswerEvalReport:
    """Build (or reuse) the collection of ``squad_file`` and ask every question of it and
    of the ``off_topic`` sets through the answer service.

    ``mode``: "extractive" never loads a model, "generative" requires a built one
    (``ModelNotBuilt`` otherwise), "auto" uses one when built, like ``docqa ask``.
    ``embedder`` (tests) overrides the configured one.
    """
    from qa.answering.assembly import build_answer_service

    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    _check_limit(limit)
    squad_file = Path(squad_file)
    squad = load_squad(squad_file)  # every input is checked before a model loads
    off_sets = [(Path(p).name, load_questions_jsonl(Path(p), limit=limit)) for p in off_topic]
    if len({name for name, _ in off_sets}) != len(off_sets):
        raise InvalidInput("two off-topic sets have the same file name")
    golds = list(squad.questions[:limit])
    if mode == "generative" and not (settings.llm_dir / MANIFEST).is_file():
        raise ModelNotBuilt(_NO_MODEL.format(settings.llm_dir))

    embedder = embedder or get_embedder(settings)
    folder = eval_folder(
        settings, f"answers-{squad_file.stem}", file_digest(squad_file.resolve()), embedder
    )
    built = build_eval_index(
        folder, _articles_as_docs(squad), embedder, settings, progress, source=squad_file
    )
    # The answer side exactly as the product builds it, pointed at the eval DB and index;
    # the model (if any) is still the user's.
    eval_settings = settings.model_copy(
        update={
            "data_dir": built.folder,
            "database_url": built.db_url,
            "model_dir": settings.llm_dir,
        }
    )
    db = Database(built.db_url)
    try:
        with db.session() as session:
            coll_id = get_collection(session, EVAL_COLLECTION).id
        service = build_answer_service(
            eval_settings, db=db, embedder=embedder, use_model=mode != "extractive"
        )
        if mode == "generative" and service.generator is None:
            raise ModelNotBuilt(_NO_MODEL.format(settings.llm_dir))
        # Greedy decoding: two runs over the same file give the same answers.
        options = AskOptions(k=settings.retrieval_k, temperature=0.0, seed=0)
        results = _ask_all(service, coll_id, options, golds, off_sets, progress)
    finally:
        db.dispose()
    return _report(squad_file, squad, service.mode, embedder.model_id, built, results, off_sets)


def _ask_all(
    service: AnswerService,
    coll_id: int,
    options: AskOptions,
    golds: list[GoldQuestion],
    off_sets: list[tuple[str, list[str]]],
    progress: ProgressFn | None,
) -> list[Asked]:
    todo: list[tuple[str, Kind, str, GoldQuestion | None]] = [
        (g.question, "impossible" if g.impossible else "answerable", "squad", g) for g in golds
    ]
    for name, questions in off_sets:
        todo += [(q, "off_topic", name, None) for q in questions]
    results: list[Asked] = []
    for i, (question, kind, set_name, gold) in enumerate(todo):
        results.append(_ask(service, question, coll_id, options, kind, set_name, gold))
        if progress and ((i + 1) % 10 == 0 or i + 1 == len(todo)):
            progress("asking", i + 1, len(todo))
    return results


def _report(
    squad_file: Path,
    squad: SquadSet,
    mode: str,
    model_id: str,
    built: BuiltIndex,
    results: list[Asked],
    off_sets: list[tuple[str, list[str]]],
) -> AnswerEvalReport:
    answerable = [r for r in results if r.kind == "answerable"]
    impossible = [r for r in results if r.kind == "impossible"]
    cited = [r for r in answerable if r.first_citation_hit is not None]
    off = tuple(
        OffTopicScores(
            name,
            len(questions),
            sum(1 for r in results if r.set_name == name and r.outcome == "not_found"),
        )
        for name, questions in off_sets
    )
    latencies = [r.latency_ms for r in results]
    prompts = [float(r.prompt_tokens) for r in results if r.prompt_tokens is not None]
    return AnswerEvalReport(
        dataset=str(squad_file),
        version=squad.version,
        mode=mode,
        model_id=model_id,
        documents=built.documents,
        chunks=built.chunks,
        index_dir=built.folder,
        index_cached=built.cached,
        answerable=len(answerable),
        answer_recall=sum(1 for r in answerable if r.hit) / len(answerable) if answerable else 0,
        cited=len(cited),
        citation_precision=(
            sum(1 for r in cited if r.first_citation_hit) / len(cited) if cited else None
        ),
        false_declines=sum(1 for r in answerable if r.outcome == "not_found"),
        impossible=len(impossible),
        impossible_declines=sum(1 for r in impossible if r.outcome == "not_found"),
        off_topic=off,
        errors=sum(1 for r in results if r.outcome == "error"),
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        results=tuple(results),
        prompt_tokens_mean=sum(prompts) / len(prompts) if prompts else None,
        prompt_tokens_p95=percentile(prompts, 95) if prompts else None,
    )


__all__ = [
    "MODES",
    "AnswerEvalReport",
    "Asked",
    "OffTopicScores",
    "evaluate_answers",
]
