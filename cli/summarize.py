"""``docqa summarize``: a summary of one document or a whole collection, in this process.

    docqa summarize 3f2a9c                      # a document, by a prefix of its id
    docqa summarize --collection handbook --json --out handbook-summary.json

No job row and no worker: the CLI runs the same ``SummaryService`` the workers run and
prints the Markdown (or the JSON result). Progress goes to stderr, so the output can be
piped or redirected.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from sqlalchemy import select

from cli.console import err, progress_bar
from qa.errors import InvalidInput, NotFound
from qa.limits import MAX_SUMMARY_STATEMENTS
from qa.settings import Settings
from qa.summaries.control import JobControl
from qa.summaries.options import SummaryOptions


def _document_id(settings: Settings, prefix: str) -> str:
    from qa.store.db.engine import Database
    from qa.store.db.models import Document

    prefix = prefix.strip().lower()
    if not prefix or not all(ch in "0123456789abcdef" for ch in prefix):
        raise InvalidInput("give a document id (or the first characters of one), in hex")
    db = Database(settings.db_url)
    try:
        with db.session() as session:
            ids = session.scalars(
                select(Document.id).where(Document.id.like(f"{prefix}%")).limit(2)
            ).all()
    finally:
        db.dispose()
    if not ids:
        raise NotFound(f"no document id starts with {prefix!r} (see: docqa docs)")
    if len(ids) > 1:
        raise InvalidInput(f"several documents start with {prefix!r}; give more characters")
    return ids[0]


def _collection_id(settings: Settings, name: str) -> int:
    from qa.store.catalog import get_collection
    from qa.store.db.engine import Database

    db = Database(settings.db_url)
    try:
        with db.session() as session:
            return get_collection(session, name).id
    finally:
        db.dispose()


class _Bar(JobControl):
    def __init__(self, update: object) -> None:
        super().__init__()
        self.update = update

    def progress(self, fraction: float) -> None:
        self.update(int(fraction * 1000), 1000, "summarizing")  # type: ignore[operator]


@click.command("summarize")
@click.argument("doc_id_prefix", required=False)
@click.option("--collection", "-c", default=None, help="Summarize this whole collection.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file instead of standard output.",
)
@click.option("--extractive", is_flag=True, help="Do not use the model even if one is built.")
@click.option(
    "--max-statements",
    type=click.IntRange(1, MAX_SUMMARY_STATEMENTS),
    default=None,
    help="Default 10.",
)
@click.pass_obj
def summarize_command(
    settings: Settings,
    doc_id_prefix: str | None,
    collection: str | None,
    as_json: bool,
    out_file: Path | None,
    extractive: bool,
    max_statements: int | None,
) -> None:
    """Summarize a document (DOC_ID_PREFIX) or --collection NAME, citing pages."""
    from qa.answering.assembly import load_generator
    from qa.retrieval.embedder import get_embedder
    from qa.store.db.engine import Database
    from qa.summaries.service import SummaryService

    if (doc_id_prefix is None) == (collection is None):
        raise click.UsageError("give a document id prefix or --collection NAME (one of them)")
    options = SummaryOptions(
        **({"max_statements": max_statements} if max_statements is not None else {})
    )
    doc_id = _document_id(settings, doc_id_prefix) if doc_id_prefix is not None else None
    coll_id = _collection_id(settings, collection) if collection is not None else None
    db = Database(settings.db_url)
    try:
        generator = None if extractive else load_generator(settings)
        service = SummaryService(db, get_embedder(settings), generator, options=options)
        with progress_bar("summarizing") as update:
            control = _Bar(update)
            if doc_id is not None:
                result = service.summarize_document(doc_id, control=control)
            else:
                assert coll_id is not None
                result = service.summarize_collection(coll_id, control=control)
    finally:
        db.dispose()
    text = (
        json.dumps(result, ensure_ascii=False, indent=2) + "\n" if as_json else result["markdown"]
    )
    if out_file is None:
        click.echo(text, nl=False)
    else:
        out_file.write_text(text, encoding="utf-8")
        err.print(f"wrote {out_file} ({result['model']}, {len(result['statements'])} statements)")
