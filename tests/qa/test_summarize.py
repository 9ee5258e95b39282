"""Summaries: map-reduce with the real tiny Qwen3, citations the model cannot get wrong,
the extractive fallback, jobs (progress, cancel, access) and batch-after-interactive."""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ingest.factory import build_ingest_service
from ingest.runner import run_ingest
from qa.accounts.access import READ, AccessService
from qa.accounts.audit import SUMMARIZE, AuditLog
from qa.accounts.users import AccountService, Principal
from qa.answering.answer_service import AskOptions
from qa.answering.assembly import build_answer_service
from qa.errors import Conflict, InvalidInput, NotFound, PermissionDenied, Unavailable
from qa.llm.generate import ChatMessage, Generator, OnnxQwenGenerator, Prompt, TokenEvent
from qa.llm.resumable import BatchTimings, ResumableGenerator
from qa.llm.slot import INTERACTIVE, ModelSlot
from qa.retrieval.embedder import Embedder
from qa.settings import Settings
from qa.store.db.engine import Database
from qa.store.db.models import Document, PageText
from qa.summaries.control import JobControl
from qa.summaries.jobs import SummaryJobDetail, SummaryJobs
from qa.summaries.mapreduce import MAP_SYSTEM
from qa.summaries.options import SummaryOptions
from qa.summaries.service import SummaryService
from qa.summaries.text import clean, format_pages, intersect, parse_statements
from tests.conftest import SAMPLES
from worker.embedded import EmbeddedIngestQueue

#: short generations keep the tiny model's many windows quick
FAST = SummaryOptions(max_new_tokens=32)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """The sample documents in "handbook", a secret one in "finance" (SQLite), built once."""
    root = tmp_path_factory.mktemp("summaries") / "var"
    service = build_ingest_service(Settings(data_dir=root), embedder=embedder)
    try:
        run_ingest(service, [SAMPLES], "handbook")
        secret = root.parent / "finance" / "falcon-budget.md"
        secret.parent.mkdir()
        secret.write_text("# Finance\n\nProject Falcon has a budget of 4.2 million EUR.\n")
        run_ingest(service, [secret], "finance")
    finally:
        service.close()
    return root


@dataclass
class Env:
    settings: Settings
    db: Database
    docs: dict[str, str]  # file name -> document id
    collections: dict[str, int]

    def doc(self, suffix: str) -> str:
        return next(d for name, d in self.docs.items() if name.endswith(suffix))


@pytest.fixture
def env(tmp_path: Path, seeded: Path) -> Iterator[Env]:
    data = tmp_path / "var"
    shutil.copytree(seeded, data)
    settings = Settings(data_dir=data)
    db = Database(settings.db_url)
    with db.session() as s:
        docs = {d.original_name: d.id for d in s.scalars(select(Document))}
        from qa.store.catalog import list_collections

        colls = {c.name: c.id for c, _, _ in list_collections(s)}
    try:
        yield Env(settings, db, docs, colls)
    finally:
        db.dispose()


# -- the text rules -------------------------------------------------------------------------


def test_page_citations_are_parsed_and_formatted() -> None:
    parsed = parse_statements(
        "Here you go:\n- Hotels in London: EUR 220 (p. 4).\n* Receipts [pp. 3-4, 7]\n"
        "1. [D2] The budget is 4.2 million (D2, p. 1)\n- x\n- (see note) kept as text",
        10,
    )
    assert [p.text for p in parsed] == [
        "Hotels in London: EUR 220.",
        "Receipts",
        "The budget is 4.2 million",
        "(see note) kept as text",
    ]
    assert parsed[0].ranges == [(4, 4)] and parsed[1].ranges == [(3, 4), (7, 7)]
    assert 2 in parsed[2].documents and parsed[2].ranges == [(1, 1)]
    assert format_pages([7, 3, 4, 9, 10, 11]) == "pp. 3-4, 7, 9-11"
    assert format_pages([2]) == "p. 2"
    # A range is intersected with what exists, never expanded.
    assert intersect([(1, 10**6)], [2, 5]) == (2, 5)
    assert intersect([(8, 9)], [2, 5]) == ()
    assert len(clean("word " * 1000)) <= 600


# -- generative (the real tiny model) ----------------------------------------------------------


def test_document_summary_cites_the_pages_of_its_windows(
    env: Env, embedder: Embedder, gen_int8: OnnxQwenGenerator
) -> None:
    service = SummaryService(env.db, embedder, gen_int8, options=FAST)
    seen: list[float] = []

    class Progress(JobControl):
        def progress(self, fraction: float) -> None:
            seen.append(fraction)

    result = service.summarize_document(env.doc("travel-and-expenses.pdf"), control=Progress())
    assert result["model"] == "generative" and result["kind"] == "document"
    windows = [set(w["pages"]) for w in result["windows"]]
    # The 9-page PDF (about 1,000 of Qwen's tokens) does not fit the tiny model's 512-token
    # context: several windows, in order.
    assert len(windows) > 1
    assert set().union(*windows) == set(range(1, 10))
    assert [min(w) for w in windows] == sorted(min(w) for w in windows)
    statements = result["statements"]
    assert 1 <= len(statements) <= 10
    for s in statements:
        assert s["pages"] and set(s["pages"]) <= set(range(1, 10))
        assert any(set(s["pages"]) <= w for w in windows), s["pages"]
        assert s["document_name"].endswith("travel-and-expenses.pdf")
    assert result["timings"]["generations"] >= len(windows)
    assert re.search(r"\(pp?\. \d", result["markdown"])
    # progress after every window, then done
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(set(seen)) >= len(windows) + 1


class Scripted(Generator):
    """The real tiny model's tokenizer and context, with answers the test writes: a
    model that ignores the instructions and invents page numbers."""

    def __init__(self, inner: Generator, answer: Callable[[str], str], context: int) -> None:
        self.inner = inner
        self.context_length = context
        self.answer = answer
        self.prompts: list[str] = []

    def encode(self, prompt: Prompt) -> list[int]:
        return self.inner.encode(prompt)

    def stream(self, prompt: Prompt, **_: Any) -> Iterator[TokenEvent]:
        text = str(prompt[-1]["content"])  # type: ignore[index]
        self.prompts.append(text)
        yield TokenEvent(self.answer(text), finish_reason="stop")


def _liar(prompt: str) -> str:
    """Statements with invented page numbers, or none at all."""
    if "Excerpt:" in prompt:
        if "London" in prompt:
            return (
                "- Hotels in London are capped at EUR 220 per night (p. 77)\n- ok (p. 2)\n"
                "- Receipts are needed for every expense claim (p. 0)\n- Economy class flights"
            )
        return "Sure! Here is a statement without any citation."
    first = prompt.split("Statements:\n- ", 1)[1].split(" (p", 1)[0]
    if "London" in prompt:
        first = "The London hotel cap is EUR 220"
    return f"- {first} (pp. 98-99)\n- Zzyzx qwerty (p. 1)"


def test_citations_are_right_even_when_the_model_invents_pages(
    env: Env, embedder: Embedder, gen_int8: OnnxQwenGenerator
) -> None:
    doc_id = env.doc("travel-and-expenses.pdf")
    with env.db.session() as s:
        london = {
            p.number
            for p in s.scalars(select(PageText).where(PageText.document_id == doc_id))
            if "London" in p.text
        }
    assert len(london) == 1
    # A few windows (one would be the whole summary), and a limit that makes them combine.
    scripted = Scripted(gen_int8, _liar, context=4096)
    options = SummaryOptions(max_statements=2, window_tokens=500)
    result = SummaryService(env.db, embedder, scripted, options=options).summarize_document(doc_id)
    assert any("Statements:" in p for p in scripted.prompts), "the map results were combined"
    by_text = {s["text"]: s["pages"] for s in result["statements"]}
    # Invented pages (77, then 98-99) are replaced by the page the words come from.
    assert by_text["The London hotel cap is EUR 220"] == sorted(london)
    # A statement sharing no words with any input cannot be cited, so it is dropped.
    assert "Zzyzx qwerty" not in by_text
    for pages in by_text.values():
        assert pages and set(pages) <= set(range(1, 10))


def test_a_document_that_fits_one_window_is_summarized_by_one_prompt(
    env: Env, embedder: Embedder, gen_int8: OnnxQwenGenerator
) -> None:
    """No combining round for a short document: its one prompt asks for the whole summary."""

    def ten(prompt: str) -> str:
        return "\n".join(
            f"- Hotel limits and receipts, point {i} (p. {1 + i % 9})" for i in range(10)
        )

    scripted = Scripted(gen_int8, ten, context=32768)  # the 9 pages fit one window
    result = SummaryService(env.db, embedder, scripted).summarize_document(
        env.doc("travel-and-expenses.pdf")
    )
    assert len(result["windows"]) == 1
    assert len(scripted.prompts) == 1 and "at most 10 short statements" in scripted.prompts[0]
    assert len(result["statements"]) == 10


def test_collection_summary_cites_documents_and_pages(
    env: Env, embedder: Embedder, gen_int8: OnnxQwenGenerator
) -> None:
    service = SummaryService(env.db, embedder, gen_int8, options=FAST)
    result = service.summarize_collection(env.collections["handbook"])
    assert result["kind"] == "collection" and result["model"] == "generative"
    with env.db.session() as s:
        pages = {
            d.id: d.page_count
            for d in s.scalars(
                select(Document).where(Document.collection_id == env.collections["handbook"])
            )
        }
    assert {d["document_id"] for d in result["documents"]} == set(pages)
    for doc in result["documents"]:
        assert 1 <= len(doc["statements"]) <= 5
    assert 1 <= len(result["statements"]) <= 10
    for s in result["statements"] + [x for d in result["documents"] for x in d["statements"]]:
        assert s["document_id"] in pages
        assert s["pages"] and set(s["pages"]) <= set(range(1, pages[s["document_id"]] + 1))
    assert "## Across the collection" in result["markdown"]


# -- without a model ---------------------------------------------------------------------------


def test_extractive_summary_quotes_sentences_with_their_pages(env: Env, embedder: Embedder) -> None:
    service = SummaryService(env.db, embedder, None)
    result = service.summarize_document(env.doc("travel-and-expenses.pdf"))
    assert result["model"] == "extractive"
    assert result["label"].startswith("Extractive summary")
    assert "Extractive summary" in result["markdown"]
    assert 3 <= len(result["statements"]) <= 10
    with env.db.session() as s:
        pages = {
            p.number: p.text
            for p in s.scalars(
                select(PageText).where(PageText.document_id == result["document_id"])
            )
        }
    for st in result["statements"]:
        span = st["span"]
        assert st["pages"] == [span["page"]]
        quoted = pages[span["page"]][span["char_start"] : span["char_end"]]
        assert clean(quoted) == st["text"]
    collection = service.summarize_collection(env.collections["handbook"])
    assert len(collection["documents"]) == 4 and collection["model"] == "extractive"


def test_nothing_to_summarize_is_a_clear_error(env: Env, embedder: Embedder) -> None:
    service = SummaryService(env.db, embedder, None)
    with pytest.raises(NotFound):
        service.summarize_document("0" * 40)
    with pytest.raises(NotFound):
        service.summarize_collection(999_999)


# -- jobs ----------------------------------------------------------------------------------


@dataclass
class Jobs:
    jobs: SummaryJobs
    queue: EmbeddedIngestQueue
    users: dict[str, Principal]
    audit: AuditLog

    def wait(self, p: Principal, job_id: str, timeout: float = 120) -> SummaryJobDetail:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.jobs.get(p, job_id)
            if job.status not in ("queued", "running"):
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not finish")


def _queue(env: Env, embedder: Embedder, summaries: SummaryService) -> EmbeddedIngestQueue:
    """The embedded mode's queue: summary jobs on its background thread, resumed on attach."""
    queue = EmbeddedIngestQueue(build_ingest_service(env.settings, embedder=embedder))
    queue.attach_summaries(summaries)
    return queue


def _close(queue: EmbeddedIngestQueue) -> None:
    queue.close()
    queue.service.db.dispose()


def _jobs(env: Env, embedder: Embedder, generator: Generator | None) -> Jobs:
    accounts, access = AccountService(env.db), AccessService(env.db)
    users = {
        "admin": accounts.create_user("admin", "admin-password-1", "admin"),
        "editor": accounts.create_user("editor", "editor-password-1", "editor"),
        "alice": accounts.create_user("alice", "alice-password-1", "reader"),
        "bob": accounts.create_user("bob", "bob-password-1", "reader"),
    }
    for name in ("editor", "alice", "bob"):
        access.grant(env.collections["handbook"], READ, user_id=users[name].user_id)
    access.grant(env.collections["finance"], READ, user_id=users["alice"].user_id)
    queue = _queue(env, embedder, SummaryService(env.db, embedder, generator, options=FAST))
    audit = AuditLog(env.db)
    return Jobs(SummaryJobs(env.db, access, audit, queue), queue, users, audit)


@pytest.fixture
def jobs(env: Env, embedder: Embedder) -> Iterator[Jobs]:
    j = _jobs(env, embedder, None)
    yield j
    _close(j.queue)


def test_job_runs_in_the_background_and_is_audited(env: Env, jobs: Jobs) -> None:
    alice = jobs.users["alice"]
    job = jobs.jobs.submit(alice, document_id=env.doc("travel-and-expenses.pdf"), max_statements=4)
    assert job.status in ("queued", "running") and job.target == "document"
    done = jobs.wait(alice, job.id)
    assert done.status == "done" and done.progress == 1.0
    assert len(done.result["statements"]) <= 4
    assert [j.id for j in jobs.jobs.list(alice)] == [job.id]
    md = jobs.jobs.download(alice, job.id, "md")
    assert re.fullmatch(r"summary-[\w.-]*travel-and-expenses\.md", md.filename), md.filename
    assert md.content.startswith("# Summary of")
    (event,) = jobs.audit.list(action=SUMMARIZE)
    assert event.username == "alice" and event.details["job_id"] == job.id


def test_who_may_summarize_and_see_what(env: Env, jobs: Jobs) -> None:
    u = jobs.users
    falcon = env.doc("falcon-budget.md")
    # bob may not read finance: its document and collection do not exist for him.
    with pytest.raises(NotFound):
        jobs.jobs.submit(u["bob"], document_id=falcon)
    with pytest.raises(NotFound):
        jobs.jobs.submit(u["bob"], collection_id=env.collections["finance"])
    # Readers summarize documents, not whole collections.
    with pytest.raises(PermissionDenied):
        jobs.jobs.submit(u["alice"], collection_id=env.collections["handbook"])
    with pytest.raises(InvalidInput):
        jobs.jobs.submit(u["alice"])
    secret = jobs.jobs.submit(u["alice"], document_id=falcon)
    # Someone else's job is a 404, for readers and editors alike; admins see every job.
    for other in ("bob", "editor"):
        with pytest.raises(NotFound):
            jobs.jobs.get(u[other], secret.id)
        with pytest.raises(NotFound):
            jobs.jobs.cancel(u[other], secret.id)
        assert jobs.jobs.list(u[other]) == []
    assert jobs.jobs.get(u["admin"], secret.id).name.endswith("falcon-budget.md")
    jobs.wait(u["alice"], secret.id)
    # Losing the grant hides the job (and its summary) from its owner too.
    AccessService(env.db).revoke(env.collections["finance"], user_id=u["alice"].user_id)
    assert jobs.jobs.list(u["alice"]) == []
    with pytest.raises(NotFound):
        jobs.jobs.download(u["alice"], secret.id, "json")
    coll = jobs.jobs.submit(u["editor"], collection_id=env.collections["handbook"])
    assert coll.target == "collection"


@pytest.fixture
def gen_jobs(env: Env, embedder: Embedder, gen_int8: OnnxQwenGenerator) -> Iterator[Jobs]:
    j = _jobs(env, embedder, gen_int8)
    yield j
    _close(j.queue)


def test_progress_rises_and_cancel_stops_a_running_job(env: Env, gen_jobs: Jobs) -> None:
    editor = gen_jobs.users["editor"]
    job = gen_jobs.jobs.submit(editor, collection_id=env.collections["handbook"])
    progress: list[float] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = gen_jobs.jobs.get(editor, job.id)
        progress.append(now.progress)
        if now.progress >= 0.1:
            break
        time.sleep(0.02)
    assert progress == sorted(progress) and progress[-1] >= 0.1
    assert len(set(progress)) > 2, "progress moves per window"
    cancelled_at = time.monotonic()
    assert gen_jobs.jobs.cancel(editor, job.id).status in ("running", "cancelled")
    final = gen_jobs.wait(editor, job.id, timeout=30)
    assert final.status == "cancelled" and final.result is None
    assert time.monotonic() - cancelled_at < 5
    assert final.progress < 1.0
    # Cancelling again, or a finished job, changes nothing.
    assert gen_jobs.jobs.cancel(editor, job.id).status == "cancelled"


class Gated(Generator):
    """The real tiny model, but every generation first waits for ``gate``: a job that
    stays running for as long as the test needs."""

    def __init__(self, inner: Generator) -> None:
        self.inner = inner
        self.context_length = inner.context_length
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def encode(self, prompt: Prompt) -> list[int]:
        return self.inner.encode(prompt)

    def stream(self, prompt: Prompt, **kwargs: Any) -> Iterator[TokenEvent]:
        self.waiting.set()
        assert self.gate.wait(60)
        yield from self.inner.stream(prompt, **kwargs)


def test_queued_jobs_cancel_at_once_and_active_jobs_are_capped(
    env: Env, embedder: Embedder, gen_int8: OnnxQwenGenerator
) -> None:
    gated = Gated(gen_int8)
    j = _jobs(env, embedder, gated)
    try:
        bob = j.users["bob"]
        j.jobs.max_active = 2
        doc = env.doc("employee-handbook.md")
        first = j.jobs.submit(bob, document_id=doc)
        assert gated.waiting.wait(30)  # the first job holds the one summary thread
        second = j.jobs.submit(bob, document_id=doc)
        assert j.jobs.get(bob, first.id).status == "running"
        assert j.jobs.get(bob, second.id).status == "queued"
        with pytest.raises(Conflict):
            j.jobs.submit(bob, document_id=doc)
        # A queued job is cancelled by the request itself, before any worker sees it.
        assert j.jobs.cancel(bob, second.id).status == "cancelled"
        third = j.jobs.submit(bob, document_id=doc)  # cancelled jobs do not count
        gated.gate.set()
        assert j.wait(bob, first.id).status == "done"
        assert j.wait(bob, third.id).status == "done"
        assert j.jobs.get(bob, second.id).status == "cancelled"  # never run after all
    finally:
        gated.gate.set()
        _close(j.queue)


def test_a_job_that_cannot_be_queued_fails_with_a_reason(env: Env, jobs: Jobs) -> None:
    alice = jobs.users["alice"]
    jobs.queue.summaries.close()  # the process is stopping: nothing takes new jobs
    with pytest.raises(Unavailable, match="shutting down"):
        jobs.jobs.submit(alice, document_id=env.doc("employee-handbook.md"))
    (failed,) = jobs.jobs.list(alice)
    assert failed.status == "failed" and "could not be queued" in failed.error


def test_a_job_interrupted_by_shutdown_resumes_on_the_next_start(
    env: Env, embedder: Embedder, gen_int8: OnnxQwenGenerator
) -> None:
    gated = Gated(gen_int8)
    j = _jobs(env, embedder, gated)
    editor = j.users["editor"]
    job = j.jobs.submit(editor, document_id=env.doc("travel-and-expenses.pdf"))
    assert gated.waiting.wait(30)
    closer = threading.Thread(target=j.queue.close)
    closer.start()
    gated.gate.set()  # the running window ends; the job sees the stop and goes back
    closer.join(30)
    j.queue.service.db.dispose()
    assert j.jobs.get(editor, job.id).status == "queued"
    again = _queue(env, embedder, SummaryService(env.db, embedder, gen_int8, options=FAST))
    try:
        assert j.wait(editor, job.id).status == "done"
    finally:
        _close(again)


# -- batch yields to interactive ------------------------------------------------------------


class Recording(Generator):
    """The real tiny model, recording which thread generates when. The summary's first
    generation waits until a question has joined the queue, so the test needs no timing
    luck to have a question waiting behind a running summary window."""

    def __init__(self, inner: Generator, queue_depth: Callable[[], int]) -> None:
        self.inner = inner
        self.context_length = inner.context_length
        self.queue_depth = queue_depth
        self.log: list[str] = []
        self.summary_running = threading.Event()

    def encode(self, prompt: Prompt) -> list[int]:
        return self.inner.encode(prompt)

    def stream(self, prompt: Prompt, **kwargs: Any) -> Iterator[TokenEvent]:
        who = threading.current_thread().name
        if who == "summary" and not self.summary_running.is_set():
            self.summary_running.set()
            deadline = time.monotonic() + 30
            while self.queue_depth() < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
        self.log.append(who)
        yield from self.inner.stream(prompt, **kwargs)


def test_a_question_waiting_behind_a_summary_goes_before_its_next_window(
    env: Env, embedder: Embedder, gen_int8: OnnxQwenGenerator
) -> None:
    answers = build_answer_service(env.settings, db=env.db, embedder=embedder, generator=gen_int8)
    recording = Recording(gen_int8, lambda: answers.slot.queue_depth)
    answers.generator = recording
    summaries = SummaryService.from_answers(answers, FAST)
    assert summaries.slot is answers.slot
    doc = env.doc("travel-and-expenses.pdf")
    results: list[dict[str, Any]] = []
    summary = threading.Thread(
        target=lambda: results.append(summaries.summarize_document(doc)),
        name="summary",
        daemon=True,
    )
    summary.start()
    assert recording.summary_running.wait(30)
    events: list[dict[str, Any]] = []

    def ask() -> None:
        asked = answers.ask(
            "What is the hotel limit in London?",
            [env.collections["handbook"]],
            AskOptions(max_tokens=8, temperature=0.0),
        )
        events.extend(e.to_json() for e in asked)

    question = threading.Thread(target=ask, name="question")
    question.start()
    question.join(60)
    summary.join(120)
    assert events[-1]["type"] == "done", events[-1]
    assert any(e["type"] == "queued" for e in events), "the question waited for the window"
    # The summary's window that was running, then the question, then the summary again.
    assert recording.log[:3] == ["summary", "question", "summary"], recording.log[:5]
    # ... and on to the rest: the preempted window resumed, then at least one more
    assert recording.log.count("summary") >= 3
    # It did not even finish that window first: it stopped at a token and went on later
    # from its KV snapshot, and the summary is whole all the same.
    (result,) = results
    assert result["timings"]["preemptions"] >= 1
    assert result["timings"]["generations"] >= len(result["windows"])
    assert result["statements"]


# -- PostgreSQL ------------------------------------------------------------------------------


@pytest.mark.postgres
def test_jobs_on_postgresql(
    tmp_path: Path, postgres_url: str, embedder: Embedder, gen_int8: OnnxQwenGenerator
) -> None:
    """The job rows' conditional updates (claim, cancel, finish) on the real PostgreSQL."""
    settings = Settings(data_dir=tmp_path / "var", database_url=postgres_url)
    service = build_ingest_service(settings, embedder=embedder)
    try:
        run_ingest(service, [SAMPLES / "travel-and-expenses.pdf"], "handbook")
    finally:
        service.close()
        service.db.dispose()
    db = Database(postgres_url)
    try:
        with db.session() as s:
            (doc_id,) = s.scalars(select(Document.id)).all()
            collection_id = s.scalars(select(Document.collection_id)).one()
        env = Env(settings, db, {"travel-and-expenses.pdf": doc_id}, {"handbook": collection_id})
        gated = Gated(gen_int8)
        accounts = AccountService(db)
        admin = accounts.create_user("admin", "admin-password-1", "admin")
        queue = _queue(env, embedder, SummaryService(db, embedder, gated, options=FAST))
        audit = AuditLog(db)
        jobs = Jobs(SummaryJobs(db, AccessService(db), audit, queue), queue, {}, audit)
        try:
            running = jobs.jobs.submit(admin, document_id=doc_id)
            assert gated.waiting.wait(30)
            queued = jobs.jobs.submit(admin, collection_id=collection_id)
            assert jobs.jobs.cancel(admin, queued.id).status == "cancelled"
            assert jobs.jobs.cancel(admin, running.id).cancel_requested is True
            gated.gate.set()
            assert jobs.wait(admin, running.id).status == "cancelled"
            again = jobs.jobs.submit(admin, document_id=doc_id, max_statements=3)
            done = jobs.wait(admin, again.id)
            assert done.status == "done" and 1 <= len(done.result["statements"]) <= 3
            assert jobs.jobs.download(admin, again.id, "json").content.startswith("{")
            statuses = [j.status for j in jobs.jobs.list(admin)]
            assert statuses == ["done", "cancelled", "cancelled"]
        finally:
            gated.gate.set()
            _close(queue)
    finally:
        db.dispose()


class Interrupted(Generator):
    """The real tiny model; during the first generation, after a few tokens, a question
    joins the slot and holds it briefly. Records the token ids every stream produced."""

    def __init__(self, inner: OnnxQwenGenerator, slot: ModelSlot, after: int) -> None:
        self.inner = inner
        self.context_length = inner.context_length
        self.slot = slot
        self.after = after
        self.streams: list[list[int]] = []
        self.question_ran = threading.Event()

    def encode(self, prompt: Prompt) -> list[int]:
        return self.inner.encode(prompt)

    def _question(self) -> None:
        with self.slot.acquire(INTERACTIVE):
            self.question_ran.set()
            time.sleep(0.05)

    def stream(self, prompt: Prompt, **kwargs: Any) -> Iterator[TokenEvent]:
        ids: list[int] = []
        self.streams.append(ids)
        first = len(self.streams) == 1
        for n, event in enumerate(self.inner.stream(prompt, **kwargs)):
            ids.extend(event.token_ids)
            if first and n == self.after:
                threading.Thread(target=self._question, daemon=True).start()
                while not self.slot.interactive_waiting:
                    time.sleep(0.001)
            yield event


def test_a_generation_stopped_for_a_question_continues_exactly_where_it_stopped(
    gen_int8: OnnxQwenGenerator,
) -> None:
    greedy = SummaryOptions(temperature=0.0).sampling(40)
    messages: list[ChatMessage] = [
        {"role": "system", "content": MAP_SYSTEM},
        {"role": "user", "content": "Summarize: receipts are required for every claim."},
    ]
    saved = gen_int8.stop_ids
    gen_int8.stop_ids = frozenset()  # random weights: never stop early, 40 tokens each
    try:
        straight = Interrupted(gen_int8, ModelSlot(), after=10**6)
        ResumableGenerator(straight, ModelSlot()).generate(
            messages, greedy, JobControl(), BatchTimings()
        )
        slot = ModelSlot()
        cut = Interrupted(gen_int8, slot, after=5)
        resumable = ResumableGenerator(cut, slot)
        timings = BatchTimings()
        resumable.generate(messages, greedy, JobControl(), timings)
    finally:
        gen_int8.stop_ids = saved
    assert cut.question_ran.is_set() and timings.preemptions == 1
    assert len(cut.streams) == 2 and 5 <= len(cut.streams[0]) < 40
    # Greedy decoding over the KV snapshot gives the very tokens of an uninterrupted run.
    assert cut.streams[0] + cut.streams[1] == straight.streams[0]
    assert len(straight.streams[0]) == 40
    # The window's snapshot is dropped once it is done; the system prompt's stays for reuse.
    assert [kind for kind, _ in resumable.kv._entries] == ["prefix"]
