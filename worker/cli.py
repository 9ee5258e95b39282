"""The ``docqa`` command line.

This module is a composition root: it wires settings to the services of ``ingest`` and
``qa`` and prints what they return. It holds no business logic of its own.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import Counter
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from qa.errors import DocqaError
from qa.settings import Settings

out = Console()
err = Console(stderr=True)


def _settings(data_dir: Path | None) -> Settings:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return Settings(data_dir=data_dir) if data_dir else Settings()


class _Group(click.Group):
    """Maps docqa's own errors to a one-line message and exit status 1 (no traceback)."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except DocqaError as exc:
            err.print(f"[red]error:[/red] {exc}")
            sys.exit(1)


@click.group(cls=_Group)
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
    ctx.obj = _settings(data_dir)


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

    service = build_ingest_service(settings)
    try:
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=False,
        ) as progress:
            task = progress.add_task("scanning", total=None)

            def on_progress(done: int, total: int, name: str) -> None:
                progress.update(task, completed=done, total=total, description=name[-40:])

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
    from qa.catalog import list_collections
    from qa.db.engine import Database

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
    from qa.catalog import get_collection, list_documents
    from qa.db.engine import Database

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
    from ingest.runner import delete_collection, delete_documents

    if not document_ids and not collection:
        raise click.UsageError("name document ids or --collection")
    if document_ids and collection:
        raise click.UsageError("give either document ids or --collection, not both")
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


if __name__ == "__main__":  # pragma: no cover
    main()
