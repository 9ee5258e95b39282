"""The answer service: one event stream for every client (portal, API, CLI).

    sources  -> the passages given to the model, numbered [1]..[k], before the first token
    queued*  -> position in the model queue, while waiting (generative mode only)
    token*   -> answer text as it is generated
    citations-> each [n] checked against the sources; valid ones mapped to page + char span
    done     -> mode, outcome, timings (retrieval ms, time to first token, tokens/s), counts
    error    -> instead of the rest, when something fails after the stream started

The events are the typed classes of ``qa.answering.events``.

Retrieval takes milliseconds and the first token can take seconds on a CPU, so sources go
out first. With no model built the same stream carries an extractive answer.

Declining: when the retrieved passages do not support the question
(``qa.answering.evidence.judge``), both modes answer with the decline sentence in the
question's language, no quote and no citation, the passages still listed (as the closest
ones), and ``done.outcome`` is ``not_found``. In generative mode that gate runs before the
model queue, so an unsupported question costs no prefill; a supported one may still be
declined by the model, whose reply ``is_decline`` recognises. A follow-up in a chat is
retrieved and judged with the question before it (``qa.answering.followup``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from qa.answering.citations import CitationReport, validate_citations
from qa.answering.decline import ANSWERED, NOT_FOUND, decline_sentence, is_decline
from qa.answering.events import (
    JSON,
    AnswerEvent,
    Citations,
    Done,
    ErrorEvent,
    Queued,
    Sources,
    Token,
)
from qa.answering.evidence import focus
from qa.answering.extractive import extractive_answer
from qa.answering.followup import ground
from qa.answering.prompt import (
    DEFAULT_SYSTEM_PROMPT,
    Message,
    PromptPlan,
    build_prompt,
    system_message,
)
from qa.answering.spans import chunk_span_to_pages
from qa.errors import DocqaError, InvalidInput, require
from qa.limits import (
    MAX_ANSWER_TOKENS,
    MAX_QUESTION_CHARS,
    MAX_SOURCES,
    MAX_SYSTEM_PROMPT_CHARS,
    MAX_TEMPERATURE,
)
from qa.llm.generate import GenerationStats, Generator
from qa.llm.kv_cache import KVSessionCache
from qa.llm.slot import INTERACTIVE, ModelSlot, Turn
from qa.messages import N_
from qa.retrieval.embedder import Embedder
from qa.retrieval.retriever import Passage, RetrievalResult, Retriever
from qa.store.catalog import page_lengths
from qa.store.db.engine import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AskOptions:
    k: int = 6
    #: None: the model folder's generation_config.json decides (Generator.sampling_defaults)
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int = 512
    system_prompt: str | None = None
    seed: int | None = None

    def validate(self) -> None:
        require(
            (1 <= self.k <= MAX_SOURCES, N_("k must be between 1 and %(max)s", max=MAX_SOURCES)),
            (
                self.temperature is None or 0.0 <= self.temperature <= MAX_TEMPERATURE,
                N_("temperature must be between 0 and %(max)s", max=f"{MAX_TEMPERATURE:g}"),
            ),
            (self.top_p is None or 0.0 < self.top_p <= 1.0, N_("top_p must be in (0, 1]")),
            (
                self.top_k is None or 0 <= self.top_k <= 1000,
                N_("top_k must be between 0 and 1000"),
            ),
            (
                1 <= self.max_tokens <= MAX_ANSWER_TOKENS,
                N_("max_tokens must be between 1 and %(max)s", max=MAX_ANSWER_TOKENS),
            ),
            (
                self.system_prompt is None or len(self.system_prompt) <= MAX_SYSTEM_PROMPT_CHARS,
                N_(
                    "the system prompt is limited to %(max)s characters",
                    max=MAX_SYSTEM_PROMPT_CHARS,
                ),
            ),
        )


def checked_question(question: str) -> str:
    """The question without surrounding blanks; empty or overlong ones are refused."""
    question = question.strip()
    require(
        (bool(question), N_("the question is empty")),
        (
            len(question) <= MAX_QUESTION_CHARS,
            N_("the question is longer than %(max)s characters", max=MAX_QUESTION_CHARS),
        ),
    )
    return question


def source_dict(n: int, p: Passage) -> JSON:
    return {
        "n": n,
        "chunk_id": p.chunk_id,
        "document_id": p.document_id,
        "document_name": p.document_name,
        "title": p.document_title,
        "collection": p.collection_name,
        "page_start": p.page_start,
        "page_end": p.page_end,
        "char_start": p.char_start,
        "char_end": p.char_end,
        "heading_path": list(p.heading_path),
        "score": round(p.score, 6),
        "text": p.text,
    }


class AnswerService:
    def __init__(
        self,
        db: Database,
        retriever: Retriever,
        embedder: Embedder,
        generator: Generator | None = None,
        *,
        slot: ModelSlot | None = None,
        kv_cache: KVSessionCache | None = None,
        source_budget_tokens: int = 1500,
        answer_reserve_tokens: int = 1024,
        default_system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        focus_ratio: float = 0.0,
    ) -> None:
        self.db = db
        self.retriever = retriever
        self.embedder = embedder
        self.generator = generator
        self.slot = slot or ModelSlot()
        self.kv_cache = kv_cache if kv_cache is not None else KVSessionCache()
        self.source_budget_tokens = source_budget_tokens
        self.answer_reserve_tokens = answer_reserve_tokens
        self.default_system_prompt = default_system_prompt
        self.focus_ratio = focus_ratio

    @property
    def mode(self) -> str:
        return "extractive" if self.generator is None else "generative"

    def ask(
        self,
        question: str,
        collection_ids: Sequence[int],
        options: AskOptions | None = None,
        *,
        history: Sequence[Message] = (),
        chat_id: str | None = None,
        cancel: threading.Event | None = None,
        priority: int = INTERACTIVE,
    ) -> Iterator[AnswerEvent]:
        """Validate, retrieve, then stream. Input errors raise before the first event."""
        options = options or AskOptions()
        options.validate()
        question = checked_question(question)
        # A follow-up ("And in Paris?") is retrieved and judged together with the question
        # before it, unless it changes the subject (qa.answering.followup).
        grounding = ground(
            question,
            history,
            lambda query: self.retriever.retrieve(query, collection_ids, k=options.k),
        )
        result, retrieval_ms = grounding.result, grounding.retrieval_ms
        log.debug("evidence for %r: %s", grounding.query, grounding.verdict)
        if not grounding.verdict.supported:
            # Before the model queue: nothing to generate from, so no prefill and no wait.
            return self._declined(question, result.passages, retrieval_ms, self.mode)
        if self.generator is None:
            return self._extractive(grounding.query, result.passages, retrieval_ms)
        passages = self.prompt_passages(grounding.query, result)
        plan, max_new = self.plan_prompt(question, passages, options, history)
        # The queue place is taken now, so a full queue raises Busy before any event (the
        # web layer answers 503 + Retry-After) rather than inside a started stream.
        turn = self.slot.join(priority, cancel)
        return _TurnStream(
            self._generative(question, plan, max_new, retrieval_ms, options, chat_id, cancel, turn),
            turn,
        )

    # -- declined ---------------------------------------------------------------------------

    def _declined(
        self, question: str, passages: Sequence[Passage], retrieval_ms: float, mode: str
    ) -> Iterator[AnswerEvent]:
        """The decline sentence, no citation; the passages are listed as the closest ones."""
        started = time.perf_counter()
        yield Sources([source_dict(n, p) for n, p in enumerate(passages, 1)])
        yield from self._decline_events(question, retrieval_ms, mode, started)

    def _decline_events(
        self, question: str, retrieval_ms: float, mode: str, started: float
    ) -> Iterator[AnswerEvent]:
        sentence = decline_sentence(question)
        yield Token(sentence)
        yield Citations(citations=[], invalid=0, text=sentence, highlights=[])
        yield Done(
            mode=mode,
            finish_reason="stop",
            retrieval_ms=round(retrieval_ms, 1),
            outcome=NOT_FOUND,
            time_to_first_token_ms=round(retrieval_ms + (time.perf_counter() - started) * 1000, 1),
        )

    # -- extractive -----------------------------------------------------------------------

    def _extractive(
        self, question: str, passages: Sequence[Passage], retrieval_ms: float
    ) -> Iterator[AnswerEvent]:
        started = time.perf_counter()
        yield Sources([source_dict(n, p) for n, p in enumerate(passages, 1)])
        answer = extractive_answer(question, passages, self.embedder)
        if not answer.sentences:  # no sentence shares a content term with the question
            yield from self._decline_events(question, retrieval_ms, "extractive", started)
            return
        ttft_ms = retrieval_ms + (time.perf_counter() - started) * 1000
        for piece in answer.text.split("\n\n"):
            yield Token(piece + "\n\n")
        report = validate_citations(answer.text, passages)
        highlights = self._highlights(passages, answer.sentences)
        yield self._citations_event(report, highlights)
        yield Done(
            mode="extractive",
            finish_reason="stop",
            retrieval_ms=round(retrieval_ms, 1),
            time_to_first_token_ms=round(ttft_ms, 1),
        )

    def _highlights(self, passages: Sequence[Passage], sentences: Sequence[Any]) -> list[JSON]:
        if not sentences:
            return []
        with self.db.session() as session:
            lengths = page_lengths(session, sorted({p.document_id for p in passages}))
        out: list[JSON] = []
        for s in sentences:
            p = passages[s.source - 1]
            for span in chunk_span_to_pages(
                lengths[p.document_id], p.page_start, p.char_start, s.start, s.end
            ):
                out.append(
                    {
                        "n": s.source,
                        "document_id": p.document_id,
                        "page": span.page,
                        "char_start": span.char_start,
                        "char_end": span.char_end,
                    }
                )
        return out

    # -- generative -----------------------------------------------------------------------

    def _generative(
        self,
        question: str,
        plan: PromptPlan,
        max_new: int,
        retrieval_ms: float,
        options: AskOptions,
        chat_id: str | None,
        cancel: threading.Event | None,
        turn: Turn,
    ) -> Iterator[AnswerEvent]:
        generator = self.generator
        assert generator is not None
        queued_at = time.perf_counter()
        try:
            yield Sources(
                [source_dict(n, p) for n, p in enumerate(plan.sources, 1)], dropped=plan.dropped
            )
            # Positions repeat every heartbeat: each write is a chance to notice a client
            # that went away while it waited, so it gives its place up in time.
            for position in turn.wait():
                yield Queued(position)
        except DocqaError as exc:  # Cancelled while queued
            turn.release()
            yield ErrorEvent(exc)
            return
        except BaseException:
            turn.release()  # the client left while queued: its place goes now
            raise
        queue_wait_ms = (time.perf_counter() - queued_at) * 1000
        parts: list[str] = []
        stats: GenerationStats | None = None
        finish = "stop"
        try:
            for event in generator.stream(
                plan.messages,
                max_new_tokens=max_new,
                temperature=options.temperature,
                top_p=options.top_p,
                top_k=options.top_k,
                seed=options.seed,
                cancel=cancel,
                session_cache=self.kv_cache,
                chat_id=chat_id,
            ):
                if event.text:
                    parts.append(event.text)
                    yield Token(event.text)
                if event.finish_reason is not None:
                    finish = event.finish_reason
                    stats = event.stats
        except DocqaError as exc:
            log.warning("generation failed: %s", exc)
            yield ErrorEvent(exc)
            return
        finally:
            turn.release()
        reply = "".join(parts)
        declined = is_decline(reply)
        if declined:
            # The model found nothing: no source is presented as its answer.
            yield Citations(citations=[], invalid=0, text=decline_sentence(question), highlights=[])
        else:
            yield self._citations_event(validate_citations(reply, plan.sources), [])
        done = Done(
            mode="generative",
            model=generator.label,
            finish_reason=finish,
            retrieval_ms=round(retrieval_ms, 1),
            outcome=NOT_FOUND if declined else ANSWERED,
            queue_wait_ms=round(queue_wait_ms, 1),
        )
        if stats is not None:
            done = replace(
                done,
                time_to_first_token_ms=round(stats.time_to_first_token_s * 1000, 1),
                tokens_per_s=round(stats.decode_tokens_per_s, 2),
                prompt_tokens=stats.prompt_tokens,
                cached_tokens=stats.cached_tokens,
                prefilled_tokens=stats.prefilled_tokens,
                completion_tokens=stats.generated_tokens,
                draft_tokens=stats.draft_tokens,
                accepted_draft_tokens=stats.accepted_draft_tokens,
                draft_acceptance=round(stats.accepted_draft_tokens / stats.draft_tokens, 3)
                if stats.draft_tokens
                else None,
            )
        yield done

    def prompt_passages(self, query: str, result: RetrievalResult) -> list[Passage]:
        """The retrieved passages a supported question's prompt may hold: those far below
        the best one stay out (shorter prefill, no filler for the model to quote; see
        ``qa.answering.evidence.focus``). ``query`` is what was retrieved for."""
        return focus(query, result, self.focus_ratio)

    def plan_prompt(
        self,
        question: str,
        passages: Sequence[Passage],
        options: AskOptions,
        history: Sequence[Message] = (),
    ) -> tuple[PromptPlan, int]:
        """The exact prompt the model will see, and how many tokens it may answer with."""
        generator = self.generator
        if generator is None:
            raise InvalidInput(N_("no language model is built: answers are extractive"))
        ctx = generator.context_length
        # Small test models have small windows: the reserves shrink with the context.
        reserve = min(self.answer_reserve_tokens, ctx // 4)
        system = options.system_prompt or self.default_system_prompt
        overhead = generator.count_tokens(
            [system_message(system), *history, {"role": "user", "content": question}]
        )
        budget = min(self.source_budget_tokens, ctx - reserve - overhead)
        if budget < 1:
            raise InvalidInput(N_("the conversation is too long for the model's context window"))
        plan = build_prompt(
            question,
            passages,
            count_tokens=lambda text: generator.count_tokens([{"role": "user", "content": text}]),
            budget_tokens=budget,
            system_prompt=system,
            history=history,
        )
        max_new = min(options.max_tokens, ctx - generator.count_tokens(plan.messages) - 1)
        if max_new < 1:
            raise InvalidInput(N_("the conversation is too long for the model's context window"))
        return plan, max_new

    @staticmethod
    def _citations_event(report: CitationReport, highlights: list[JSON]) -> Citations:
        return Citations(
            citations=[c.to_dict() for c in report.citations],
            invalid=report.invalid,
            text=report.text,
            highlights=highlights,
        )


class _TurnStream(Iterator[AnswerEvent]):
    """The generative event stream, owning its model turn.

    Closing it gives the turn back even when it was never iterated (a client that left
    before the first event was written): a plain generator would not run its ``finally``.
    """

    def __init__(self, events: Iterator[AnswerEvent], turn: Turn) -> None:
        self._events = events
        self._turn = turn

    def __next__(self) -> AnswerEvent:
        return next(self._events)

    def close(self) -> None:
        try:
            close = getattr(self._events, "close", None)
            if close is not None:
                close()
        finally:
            self._turn.release()

    def __del__(self) -> None:
        # Last resort for a caller that neither exhausted nor closed the stream.
        self._turn.release()
