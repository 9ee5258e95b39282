"""``docqa backup OUT`` and ``docqa restore IN``: thin wrappers of ``qa.library.backup``.

docqa backup /srv/backups/docqa-2026-12-05.tar      # while docqa serve runs
docqa --data-dir /srv/docqa-new restore /srv/backups/docqa-2026-12-05.tar
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import click

from cli.console import err, load_settings, out
from qa.errors import InvalidInput
from qa.settings import Settings


@click.command("backup")
@click.argument("out_path", metavar="OUT", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def backup_command(settings: Settings, out_path: Path) -> None:
    """Write one consistent backup (database, originals, current indexes) to the new
    file OUT, while the service keeps running."""
    from qa.library.backup import create_backup
    from qa.retrieval.index_store import IndexStore
    from qa.store.blobstore import BlobStore
    from qa.store.db.engine import Database

    if settings.database_url is None and not settings.sqlite_file.is_file():
        # opening it would create an empty database, and back that up
        raise InvalidInput(f"no docqa database in {settings.data_dir} (is --data-dir right?)")
    db = Database(settings.db_url)
    try:
        report = create_backup(
            out_path,
            db=db,
            blobs=BlobStore(settings.blob_dir),
            indexes=IndexStore(settings.index_dir),
            run_by="docqa backup",
        )
    finally:
        db.dispose()
    c = report.counts
    out.print(
        f"backed up {report.database} database ({c['collections']} collections,"
        f" {c['documents']} documents, {c['chunks']} chunks, {c['users']} users,"
        f" {c['chats']} chats), {report.originals} originals and"
        f" {len(report.index_versions)} indexes to {report.path} ({report.bytes:,} bytes)"
    )
    if report.pending:
        err.print(
            f"{len(report.pending)} documents were still queued or processing; a restore"
            " queues them again"
        )


@click.command("restore")
@click.argument("in_path", metavar="IN", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--data-dir",
    "target",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The empty data dir to restore into (default: the one docqa uses).",
)
@click.pass_obj
def restore_command(settings: Settings, in_path: Path, target: Path | None) -> None:
    """Rebuild an empty data dir (and an empty PostgreSQL database, when
    DOCQA_DATABASE_URL names one) from the backup IN; republish indexes it lacks."""
    from ingest.factory import build_ingest_service
    from qa.library.backup import restore_backup
    from qa.retrieval.publish import Published
    from qa.store.db.engine import Database

    if target is not None:
        settings = load_settings(target)
    with contextlib.ExitStack() as stack:

        def publisher(db: Database) -> Callable[[int], Published]:
            service = build_ingest_service(settings, db=db)
            stack.callback(service.close)
            return service.publish

        report = restore_backup(
            in_path,
            data_dir=settings.data_dir,
            database_url=settings.database_url,
            publisher=publisher,
            run_by="docqa restore",
        )
    c = report.counts
    out.print(
        f"restored the backup of {report.created_at} into {report.data_dir}:"
        f" {c.get('documents', 0)} documents, {c.get('chunks', 0)} chunks,"
        f" {c.get('users', 0)} users, {report.originals} originals;"
        f" {len(report.kept_indexes)} indexes as backed up,"
        f" {len(report.republished)} republished"
    )
    if report.pending:
        err.print(
            f"{len(report.pending)} documents were queued or processing at the backup;"
            " docqa serve (or the reconciler, in scaled mode) queues them again:"
        )
        for doc in report.pending:
            err.print(f"  {doc.id[:12]}  {doc.status:<10}  {doc.name}", markup=False)
