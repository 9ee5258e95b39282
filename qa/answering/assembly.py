"""Build the answer side from settings: the same wiring for CLI, web app and workers."""

from __future__ import annotations

import logging

from qa.answering.answer_service import AnswerService
from qa.answering.prompt import DEFAULT_SYSTEM_PROMPT, system_message
from qa.errors import DocqaError
from qa.llm.generate import Generator
from qa.llm.kv_cache import KVSessionCache
from qa.llm.manifest import MANIFEST
from qa.llm.slot import ModelSlot
from qa.retrieval.embedder import Embedder, get_embedder
from qa.retrieval.index_store import IndexReader, IndexStore
from qa.retrieval.retriever import Retriever
from qa.settings import Settings
from qa.store.db.engine import Database

log = logging.getLogger(__name__)


def load_generator(settings: Settings, *, wait: bool = True) -> Generator | None:
    """The built model, or None (extractive mode) when nothing has been built yet.
    ``wait=False``: return while its session still loads on a thread (the first use waits)."""
    if not (settings.llm_dir / MANIFEST).is_file():
        log.info("no model built in %s: answering in extractive mode", settings.llm_dir)
        return None
    from qa.llm.generate import OnnxQwenGenerator

    return OnnxQwenGenerator(
        settings.llm_dir,
        threads=settings.llm_threads,
        draft_tokens=settings.llm_draft_tokens,
        prepack=settings.llm_prepack,
        wait=wait,
    )


def warm_system_prefix(
    generator: Generator | None, cache: KVSessionCache, settings: Settings
) -> None:
    """Prefill the default system turn into ``cache`` as the model loads, so the first
    question prefills only its own tokens (a remote generator's workers do this themselves)."""
    from qa.llm.generate import OnnxQwenGenerator

    if isinstance(generator, OnnxQwenGenerator):
        generator.wait_loaded()  # a model that does not load fails the start (ModelNotBuilt)
        system = system_message(settings.system_prompt or DEFAULT_SYSTEM_PROMPT)
        try:
            n = generator.prefill_prefix(system, cache)
        except DocqaError as exc:  # only a head start: the first question prefills it
            log.warning("could not prefill the system prompt: %s", exc)
            return
        log.info("system prompt prefilled: %d tokens", n)


def load_remote_generator(settings: Settings, *, batch: bool = False) -> Generator | None:
    """A generator whose model runs on the generation workers (tokens over Redis).

    The web process loads only the tokenizer and the manifest; None (extractive mode)
    when no model is built. ``batch``: for summaries, which make way for questions and
    may wait in the queue as long as their job may run.
    """
    if not (settings.llm_dir / MANIFEST).is_file():
        log.info("no model built in %s: answering in extractive mode", settings.llm_dir)
        return None
    from qa.llm.remote import QUESTION_QUEUE_TIMEOUT_S, RemoteGenerator

    assert settings.broker_url is not None
    # a summary's request may wait behind every question; a question not that long
    wait_s = float(settings.summarize_task_time_limit_s) if batch else QUESTION_QUEUE_TIMEOUT_S
    return RemoteGenerator(
        settings.llm_dir,
        settings.broker_url,
        # the longest one answer may run on a worker (below the visibility timeout)
        time_limit_s=settings.summarize_task_time_limit_s,
        batch=batch,
        queue_timeout_s=wait_s,
    )


def load_summary_generator(settings: Settings) -> Generator | None:
    """The model a summary job uses: on the generation workers (batch requests) in the
    scaled mode, else this process's own."""
    if generation_on_workers(settings):
        return load_remote_generator(settings, batch=True)
    return load_generator(settings)


def generation_on_workers(settings: Settings) -> bool:
    return bool(settings.broker_url) and settings.generation == "worker"


def build_answer_service(
    settings: Settings,
    *,
    db: Database | None = None,
    embedder: Embedder | None = None,
    generator: Generator | None = None,
    use_model: bool = True,
) -> AnswerService:
    db = db or Database(settings.db_url)
    reader = IndexReader(IndexStore(settings.index_dir, keep=settings.index_keep_versions))
    slots = 1  # one sequence at a time in this process
    if generator is None and use_model:
        if generation_on_workers(settings):
            generator = load_remote_generator(settings)
            slots = settings.generation_workers  # one sequence per generation worker
        else:
            # the model's session loads on its own thread while the embedder loads here
            generator = load_generator(settings, wait=False)
    embedder = embedder or get_embedder(settings)
    reranker = None
    if settings.rerank_model_dir is not None:
        from qa.retrieval.reranker import CrossEncoderReranker

        reranker = CrossEncoderReranker(settings.rerank_model_dir)
    retriever = Retriever(
        db,
        reader,
        embedder,
        k_dense=settings.retrieval_k_dense,
        k_lexical=settings.retrieval_k_lexical,
        rrf_k=settings.retrieval_rrf_k,
        dedup_threshold=settings.retrieval_dedup_threshold,
        reranker=reranker,
        rerank_depth=settings.rerank_depth,
    )
    service = AnswerService(
        db,
        retriever,
        embedder,
        generator,
        slot=ModelSlot(max_waiting=settings.max_queue, capacity=slots),
        source_budget_tokens=settings.source_budget_tokens,
        answer_reserve_tokens=settings.answer_reserve_tokens,
        default_system_prompt=settings.system_prompt or DEFAULT_SYSTEM_PROMPT,
        focus_ratio=settings.focus_ratio,
    )
    warm_system_prefix(generator, service.kv_cache, settings)
    return service
