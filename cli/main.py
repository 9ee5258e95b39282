"""The ``docqa`` command line.

This module is a composition root: it wires settings to the services of ``ingest`` and
``qa`` and prints what they return. It holds no business logic of its own.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from cli.console import DocqaGroup, err, load_settings, out, progress_bar, stage_progress_bar
from qa.answering.decline import NOT_FOUND
from qa.answering.events import AnswerEvent, Citations, Done, ErrorEvent, Queued, Sources, Token
from qa.limits import MAX_ANSWER_TOKENS, MAX_SOURCES
from qa.settings import Settings

if TYPE_CHECKING:
    from qa.llm.manifest import ModelManifest


@click.group(cls=DocqaGroup)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory (default: $DOCQA_DATA_DIR or ./var).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log progress details.")
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None, verbose: bool) -> None:
    """docqa: offline question answering over your own documents."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    ctx.obj = load_settings(data_dir)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--collection", "-c", required=True, help="Collection to add the documents to.")
@click.option("--retry-failed", is_flag=True, help="Parse again documents that failed before.")
@click.pass_obj
def ingest(
    settings: Settings, paths: tuple[Path, ...], collection: str, retry_failed: bool
) -> None:
    """Ingest files, folders and zip archives into a collection."""
    from ingest.factory import build_ingest_service
    from ingest.runner import run_ingest
    from qa.store.catalog import validate_collection_name

    validate_collection_name(collection)  # before the embedding model takes seconds to load
    service = build_ingest_service(settings)
    try:
        with progress_bar("scanning") as on_progress:
            report = run_ingest(
                service, list(paths), collection, retry_failed=retry_failed, progress=on_progress
            )
    finally:
        service.close()

    table = Table(title=f"ingest into {collection!r}")
    table.add_column("outcome")
    table.add_column("files", justify="right")
    counts = Counter(r.outcome for r in report.results)
    for outcome in ("indexed", "duplicate", "failed"):
        table.add_row(outcome, str(counts.get(outcome, 0)))
    out.print(table)
    reasons = Counter(r.reason for r in report.results if r.outcome == "failed")
    if reasons:
        rt = Table(title="failed, by reason")
        rt.add_column("reason")
        rt.add_column("files", justify="right")
        for reason, n in reasons.most_common():
            rt.add_row(reason or "?", str(n))
        out.print(rt)
    out.print(
        f"{len(report.results)} files accounted for; {report.chunks} new chunks;"
        f" {report.replaced} older versions replaced; index {report.index_version}"
    )


@main.command()
@click.pass_obj
def collections(settings: Settings) -> None:
    """List collections with their document and chunk counts."""
    from qa.store.catalog import list_collections
    from qa.store.db.engine import Database

    db = Database(settings.db_url)
    with db.session() as session:
        rows = list_collections(session)
    table = Table(title="collections")
    for col in ("name", "documents", "chunks", "created"):
        table.add_column(col)
    for coll, ndocs, nchunks in rows:
        table.add_row(coll.name, str(ndocs), str(nchunks), f"{coll.created_at:%Y-%m-%d %H:%M}")
    out.print(table)


@main.command()
@click.option("--collection", "-c", default=None, help="Only this collection.")
@click.option(
    "--status",
    type=click.Choice(["queued", "processing", "indexed", "failed"]),
    default=None,
    help="Only documents with this status.",
)
@click.pass_obj
def docs(settings: Settings, collection: str | None, status: str | None) -> None:
    """List documents with their status (and the reason when they failed)."""
    from qa.store.catalog import get_collection, list_documents
    from qa.store.db.engine import Database

    db = Database(settings.db_url)
    with db.session() as session:
        coll_id = get_collection(session, collection).id if collection else None
        documents = list_documents(session, coll_id, status)
    table = Table(title=f"{len(documents)} documents")
    for col in ("id", "name", "type", "status", "pages", "chunks", "reason"):
        table.add_column(col, overflow="fold")
    for d in documents:
        table.add_row(
            d.id[:12],
            d.original_name,
            d.detected_type or "",
            d.status,
            str(d.page_count),
            str(d.chunk_count),
            d.error or "",
        )
    out.print(table)


@main.command()
@click.argument("document_ids", nargs=-1)
@click.option("--collection", "-c", default=None, help="Delete this whole collection.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def delete(
    settings: Settings, document_ids: tuple[str, ...], collection: str | None, yes: bool
) -> None:
    """Delete documents (by id or id prefix) or a whole collection, then republish."""
    from ingest.factory import build_ingest_service
    from ingest.runner import check_id_prefixes, delete_collection, delete_documents

    if not document_ids and not collection:
        raise click.UsageError("name document ids or --collection")
    if document_ids and collection:
        raise click.UsageError("give either document ids or --collection, not both")
    check_id_prefixes(list(document_ids))
    if collection and not yes:
        click.confirm(f"delete collection {collection!r} and all its documents?", abort=True)
    service = build_ingest_service(settings)
    try:
        if collection:
            n = delete_collection(service, collection)
            out.print(f"deleted collection {collection!r} ({n} documents)")
        else:
            names = delete_documents(service, list(document_ids))
            for name in names:
                out.print(f"deleted {name}")
    finally:
        service.close()


@main.command()
@click.option(
    "--vacuum",
    is_flag=True,
    help="Also rewrite the SQLite file without its free pages (locks writers meanwhile).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def gc(settings: Settings, vacuum: bool, as_json: bool) -> None:
    """Remove originals, temp files and indexes no live document or collection owns."""
    import json

    from qa.accounts.audit import AuditLog
    from qa.library.gc import collect_garbage, record_gc
    from qa.retrieval.index_store import IndexStore
    from qa.store.blobstore import BlobStore
    from qa.store.db.engine import Database

    db = Database(settings.db_url)
    try:
        report = collect_garbage(
            db,
            BlobStore(settings.blob_dir),
            IndexStore(settings.index_dir),
            settings.data_dir / "uploads",
            vacuum=vacuum,
        )
        record_gc(AuditLog(db), report, run_by="docqa gc")
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps(report.to_dict()))
        return
    out.print(
        f"freed {report.freed_bytes:,} bytes: {report.originals} originals,"
        f" {report.temp_files} temp files, {len(report.index_dirs)} index directories"
    )
    if report.missing_originals:
        err.print(f"{report.missing_originals} documents have lost their original")
    if not report.database_flushed:
        err.print("the SQLite write-ahead log is still in use; run docqa gc again later")


@main.command()
@click.option("--collection", "-c", default=None, help="Only this collection.")
@click.pass_obj
def reindex(settings: Settings, collection: str | None) -> None:
    """Rebuild FAISS + BM25 indexes from the metadata DB (no re-embedding)."""
    from ingest.factory import build_ingest_service
    from ingest.runner import reindex_collections

    service = build_ingest_service(settings)
    try:
        for pub in reindex_collections(service, collection):
            out.print(f"{pub.collection}: {pub.count} chunks -> version {pub.version}")
    finally:
        service.close()


@main.group(name="eval")
def eval_group() -> None:
    """Measure quality on benchmark folders."""


@eval_group.command(name="retrieval")
@click.argument("beir_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", default="test", show_default=True, help="qrels/<split>.tsv to score.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N queries.")
@click.option(
    "--backend",
    type=click.Choice(["torch", "onnx-int8"]),
    default=None,
    help="Embedding backend (default: the configured one).",
)
@click.pass_obj
def eval_retrieval(
    settings: Settings, beir_dir: Path, split: str, limit: int | None, backend: str | None
) -> None:
    """nDCG@10, Recall@10/100, MRR@10 and latency of dense, BM25 and hybrid retrieval
    on a BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv)."""
    from ingest.evaluation import evaluate_retrieval

    with stage_progress_bar("loading") as on_progress:
        report = evaluate_retrieval(
            beir_dir,
            settings=settings,
            split=split,
            limit_queries=limit,
            backend=backend,
            progress=on_progress,
        )

    table = Table(title=f"retrieval on {beir_dir.name} ({split}, {report.queries} queries)")
    for col in ("mode", "nDCG@10", "Recall@10", "Recall@100", "MRR@10", "p50 ms", "p95 ms"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for s in report.scores:
        table.add_row(
            {"dense": "dense", "lexical": "BM25", "hybrid": "hybrid"}[s.mode],
            f"{s.ndcg_at_10:.4f}",
            f"{s.recall_at_10:.4f}",
            f"{s.recall_at_100:.4f}",
            f"{s.mrr_at_10:.4f}",
            f"{s.latency_p50_ms:.1f}",
            f"{s.latency_p95_ms:.1f}",
        )
    out.print(table)
    how = "reused" if report.index_cached else "built"
    out.print(
        f"{report.documents} documents, {report.chunks} chunks, {report.model_id}"
        f" ({report.backend}); index {how} ({report.index_seconds:.0f} s to build)"
        f" in {report.index_dir}"
    )


@main.command()
@click.argument("question")
@click.option(
    "--collection", "-c", "collections_", multiple=True, help="Search only these (repeatable)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the event stream as JSON lines.")
@click.option("--extractive", is_flag=True, help="Do not use the model even if one is built.")
@click.option("-k", "k", type=click.IntRange(1, MAX_SOURCES), default=None, help="Passages to use.")
@click.option("--max-tokens", type=click.IntRange(1, MAX_ANSWER_TOKENS), default=512)
@click.option(
    "--temperature",
    type=click.FloatRange(0, 2),
    default=None,
    help="Sampling temperature, 0 = greedy (default: the model's generation_config.json).",
)
@click.pass_obj
def ask(
    settings: Settings,
    question: str,
    collections_: tuple[str, ...],
    as_json: bool,
    extractive: bool,
    k: int | None,
    max_tokens: int,
    temperature: float | None,
) -> None:
    """Answer QUESTION from the documents, streaming, with cited sources."""
    import json

    from qa.answering.answer_service import AskOptions, checked_question
    from qa.answering.assembly import build_answer_service
    from qa.store.catalog import get_collection
    from qa.store.db.models import Collection

    question = checked_question(question)  # before the models take seconds to load
    service = build_answer_service(settings, use_model=not extractive)
    with service.db.session() as session:
        if collections_:
            ids = [get_collection(session, name).id for name in collections_]
        else:
            from sqlalchemy import select

            ids = list(session.scalars(select(Collection.id)).all())
    options = AskOptions(
        k=k or settings.retrieval_k, max_tokens=max_tokens, temperature=temperature
    )
    for event in service.ask(question, ids, options):
        if as_json:
            click.echo(json.dumps(event.to_json(), ensure_ascii=False))
        else:
            _print_event(event)
        if isinstance(event, ErrorEvent):
            sys.exit(1)


def _print_event(event: AnswerEvent) -> None:
    """One event of ``docqa ask`` for a person: sources, the answer, then where it is from."""
    if isinstance(event, Sources):
        for src in event.sources:
            pages = src["page_start"]
            if src["page_end"] != src["page_start"]:
                pages = f"{src['page_start']}-{src['page_end']}"
            out.print(f"[dim][{src['n']}] {src['document_name']} p. {pages}[/dim]")
        out.print()
    elif isinstance(event, Queued):
        out.print(f"[dim]waiting for the model: position {event.position}[/dim]")
    elif isinstance(event, Token):
        out.print(event.text, end="", markup=False, highlight=False, soft_wrap=True)
        out.file.flush()
    elif isinstance(event, Citations):
        _print_citations(event)
    elif isinstance(event, Done):
        if event.outcome == NOT_FOUND:
            out.print("[dim]The sources above are only the closest passages found.[/dim]")
        ttft, tps = event.time_to_first_token_ms, event.tokens_per_s
        out.print(
            f"[dim]{event.mode}: retrieval {event.retrieval_ms} ms"
            + (f", first token {ttft} ms" if ttft is not None else "")
            + (f", {tps} tok/s" if tps is not None else "")
            + "[/dim]"
        )
    elif isinstance(event, ErrorEvent):
        err.print(f"[red]error:[/red] {event.message}")


def _print_citations(event: Citations) -> None:
    out.print()
    for c in event.citations:
        pages = {h["page"] for h in event.highlights if h["n"] == c["n"]}
        page = min(pages) if pages else c["page_start"]
        out.print(f"[{c['n']}] {c['document_name']}, page {page}", markup=False)
    if event.invalid:
        err.print(f"[yellow]{event.invalid} invalid citation(s) removed[/yellow]")


@main.group()
def model() -> None:
    """Build and inspect the local language model (Qwen3, ONNX Runtime, INT8)."""


@model.command("build")
@click.option(
    "--from",
    "source",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A Hugging Face Qwen3 folder (config.json, *.safetensors, tokenizer files).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write the built model (default: $DOCQA_MODEL_DIR or <data dir>/model).",
)
@click.option("--precision", type=click.Choice(["int8", "fp32"]), default="int8")
@click.option(
    "--kernel",
    type=click.Choice(["dynamic", "blockwise"]),
    # dynamic is the one that meets the CPU speed targets at 36 layers (about 88 tok/s
    # prefill vs 41); blockwise keeps finer weight scales and 8-bit activations per block.
    default="dynamic",
    show_default=True,
    help="INT8 matmul kernel: dynamic (per-channel weights, DynamicQuantizeMatMul) or "
    "blockwise (MatMulNBits, block 32).",
)
@click.option(
    "--block-size",
    type=click.Choice(["auto", "16", "32", "64", "128", "256"]),
    default="auto",
    show_default=True,
    help="Blockwise kernel's block size along K. auto: 128 where it divides every matmul "
    "(faster), then 32 if the accuracy check rejects it.",
)
@click.option(
    "--context",
    type=click.IntRange(min=256),
    default=None,
    help="Context window to serve, in tokens (default 32768, capped at the model's"
    " max_position_embeddings): rotary tables and KV limits are sized for it, not for the"
    " model's maximum.",
)
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Compare the INT8 model with a float32 reference on fixed sample text before "
    "installing it; layers that fail are rebuilt blockwise, else the build fails.",
)
@click.option(
    "--kv-cache",
    type=click.Choice(["fp32", "int8"]),
    default="fp32",
    show_default=True,
    help="KV cache element type: int8 (fixed per-channel scales from the sample text) "
    "takes a quarter of fp32's memory: 2.4 GB instead of 9.7 GB for 32K tokens on Qwen3-4B.",
)
@click.pass_obj
def model_build(
    settings: Settings,
    source: Path,
    out_dir: Path | None,
    precision: str,
    kernel: str,
    block_size: str,
    context: int | None,
    check: bool,
    kv_cache: str,
) -> None:
    """Export and quantize a Qwen3 checkpoint once, offline, streaming its weights."""
    from qa.llm.accuracy import AccuracyReport
    from qa.llm.build import DEFAULT_CONTEXT, build_model

    target = out_dir or settings.llm_dir
    with progress_bar("building") as on_progress:
        report = build_model(
            source,
            target,
            precision=precision,  # type: ignore[arg-type]
            int8_kernel=kernel,  # type: ignore[arg-type]
            block_size=None if block_size == "auto" else int(block_size),
            context_length=context or DEFAULT_CONTEXT,
            check_accuracy=check,
            kv_cache=kv_cache,  # type: ignore[arg-type]
            progress=on_progress,
        )
    m = report.manifest
    for rejected in report.rejected:
        out.print(f"[yellow]accuracy check failed: {rejected}[/yellow]")
    if m.blockwise_layers:
        layers = ", ".join(map(str, m.blockwise_layers))
        out.print(f"[yellow]mixed build: layers {layers} use the blockwise kernel[/yellow]")
    if m.accuracy is not None:
        out.print(f"accuracy check passed: {AccuracyReport.from_json(m.accuracy).summary()}")
    out.print(
        f"built {report.manifest.architecture} ({report.manifest.spec.num_layers} layers,"
        f" {report.manifest.precision}, context {report.manifest.context_length},"
        f" {m.kv_cache} KV cache) into"
        f" {report.out_dir}:"
        f" {report.model_bytes / 1e9:.2f} GB in {report.seconds:.0f} s"
    )


@model.command("prepack")
@click.pass_obj
def model_prepack(settings: Settings) -> None:
    """Write this machine's prepacked copy of the built model now, so that the first start
    of the service maps it instead of writing it (about 10 GB and 30 s for Qwen3-4B)."""
    import time

    from qa.errors import ConfigError
    from qa.llm.manifest import ModelManifest
    from qa.llm.session import PrepackedCopy, open_session

    manifest = ModelManifest.read(settings.llm_dir)  # ModelNotBuilt: the CLI's clear error
    copy = PrepackedCopy.of(settings.llm_dir, manifest.key)
    if copy.ready():
        out.print(
            f"already prepacked for this machine: {copy.folder} ({copy.size_bytes() / 1e9:.2f} GB)"
        )
        return
    started = time.monotonic()
    opened = open_session(settings.llm_dir, manifest.key, settings.llm_threads, True, True)
    if opened.copy_folder is None:
        raise ConfigError(
            f"no prepacked copy written in {settings.llm_dir} (read-only folder, too little free"
            " disk, or another process writing it: see the log)"
        )
    out.print(
        f"prepacked for this machine in {time.monotonic() - started:.0f} s: {copy.folder}"
        f" ({copy.size_bytes() / 1e9:.2f} GB)"
    )


@model.command("info")
@click.pass_obj
def model_info(settings: Settings) -> None:
    """Show the built model, or say that answers are extractive until one is built."""
    from qa.errors import ModelNotBuilt
    from qa.llm.manifest import ModelManifest

    try:
        manifest = ModelManifest.read(settings.llm_dir)
    except ModelNotBuilt as exc:
        out.print(f"{exc}\nanswers are extractive until a model is built")
        return
    table = Table(title=f"model in {settings.llm_dir}")
    table.add_column("field")
    table.add_column("value")
    for key, value in manifest.to_json().items():
        if key != "accuracy":
            table.add_row(key, str(value))
    acc = manifest.accuracy
    if acc is None:
        table.add_row("accuracy", "not checked (built with --no-check, or before the check)")
    else:
        from qa.llm.accuracy import AccuracyReport

        report = AccuracyReport.from_json(acc)
        table.add_row("accuracy", ("passed: " if report.passed else "FAILED: ") + report.summary())
        for rejected in acc.get("rejected") or []:
            table.add_row("accuracy (rejected build)", str(rejected))
    per_token = manifest.kv_bytes_per_token
    full = per_token * manifest.context_length
    table.add_row(
        "KV cache size",
        f"{manifest.kv_cache}: {per_token:,} bytes per token,"
        f" {full / 2**30:.2f} GiB for the whole context",
    )
    table.add_row("speculation", _speculation(settings, manifest))
    from qa.cpu import cpu_name, int8_instructions

    table.add_row("CPU (this machine)", cpu_name())
    table.add_row("int8 instructions (this machine)", int8_instructions().summary())
    table.add_row("prepacked weights (this machine)", _prepacked(settings, manifest))
    out.print(table)


def _prepacked(settings: Settings, manifest: ModelManifest) -> str:
    from qa.llm.session import PrepackedCopy

    if not settings.llm_prepack:
        return "off (DOCQA_LLM_PREPACK=0): packed on the heap at every load"
    copy = PrepackedCopy.of(settings.llm_dir, manifest.key)
    if copy.ready():
        return f"{copy.folder.name}: {copy.size_bytes() / 1e9:.2f} GB, mapped at load"
    return "none yet: written at the next load"


def _speculation(settings: Settings, manifest: ModelManifest) -> str:
    import onnx

    from qa.llm.generate import speculation_off
    from qa.llm.manifest import LOGITS_TO_KEEP, MODEL_FILE

    graph = onnx.load(str(settings.llm_dir / MODEL_FILE), load_external_data=False).graph
    keeps = any(i.name == LOGITS_TO_KEEP for i in graph.input)
    off = speculation_off(manifest, keeps, settings.llm_draft_tokens)
    if off:
        return f"off: {off}"
    return f"prompt lookup, up to {settings.llm_draft_tokens} tokens per step"


@main.command()
@click.option("--host", default=None, help="Address to listen on (default $DOCQA_HOST).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Default $DOCQA_PORT.")
@click.option(
    "--threads", type=click.IntRange(2, 1024), default=None, help="Request threads (streams)."
)
@click.pass_obj
def serve(settings: Settings, host: str | None, port: int | None, threads: int | None) -> None:
    """Serve the portal, admin console and APIs (ingestion and the model in-process)."""
    from cli.serve import first_admin
    from cli.serve import serve as run_server

    host = host or settings.host
    port = port or settings.port
    creds = first_admin(settings)
    if creds is not None:
        out.print(
            "[bold]first start: created the admin account[/bold]\n"
            f"  username: {creds[0]}\n  password: {creds[1]}\n"
            "  (shown once; change it under Admin > Users)"
        )
    out.print(f"docqa portal on http://{host}:{port}/  (Ctrl-C stops it)")
    run_server(settings, host=host, port=port, threads=threads or settings.web_threads)


from cli.backup import backup_command, restore_command  # noqa: E402
from cli.directory import directory_command  # noqa: E402
from cli.evaluate import eval_answers_command  # noqa: E402  (registered below)
from cli.summarize import summarize_command  # noqa: E402  (it registers on main below)
from cli.sync import sync_command  # noqa: E402
from cli.users import users_command  # noqa: E402
from cli.worker import worker_command  # noqa: E402

eval_group.add_command(eval_answers_command)
main.add_command(worker_command)
main.add_command(summarize_command)
main.add_command(backup_command)
main.add_command(restore_command)
main.add_command(directory_command)
main.add_command(users_command)
main.add_command(sync_command)

if __name__ == "__main__":  # pragma: no cover
    main()
