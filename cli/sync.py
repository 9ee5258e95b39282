"""``docqa sync``: folders (local, NFS or SMB mounts) kept in sync with a collection.

docqa sync add /mnt/share/policies --collection policies --interval 10m --include '*.pdf'
docqa sync list
docqa sync run [ID]          # scan now (all sources, or one), then process what changed
docqa sync remove ID         # stop syncing; the documents stay in the collection

``docqa serve`` scans every source when its interval has passed (in scaled mode, Celery
beat does); ``run`` is the same scan by hand.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import click
from rich.table import Table

from cli.console import out
from qa.accounts.audit import SYNC_ADD, SYNC_REMOVE, AuditLog
from qa.library.sync_sources import DEFAULT_INTERVAL_S, SourceView, SyncSources, parse_interval
from qa.settings import Settings
from qa.store.db.engine import Database


@contextmanager
def _sources(settings: Settings) -> Iterator[SyncSources]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url)
    try:
        yield SyncSources(db)
    finally:
        db.dispose()


@click.group("sync")
def sync_command() -> None:
    """Folders kept in sync with a collection."""


@sync_command.command("add")
@click.argument("path")
@click.option("--collection", "-c", required=True, help="Collection the files go to.")
@click.option("--interval", default=f"{DEFAULT_INTERVAL_S // 60}m", show_default=True)
@click.option("--include", multiple=True, help="Only files matching this pattern (repeatable).")
@click.option(
    "--exclude",
    multiple=True,
    help="Leave out files matching this pattern (repeatable; default: hidden, temp, lock files).",
)
@click.pass_obj
def add(
    settings: Settings,
    path: str,
    collection: str,
    interval: str,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
) -> None:
    """Sync the folder PATH into a collection (created if needed)."""
    from qa.store.catalog import validate_collection_name

    validate_collection_name(collection)
    with _sources(settings) as sources:
        view = sources.add(
            path,
            collection,
            interval_s=parse_interval(interval),
            include=include,
            exclude=exclude or None,
        )
        _audit(sources, SYNC_ADD, view)
    out.print(f"synced folder {view.id}: {view.path} -> {view.collection!r}, every {interval}")


@sync_command.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def list_(settings: Settings, as_json: bool) -> None:
    """The synced folders and how their last scan went."""
    with _sources(settings) as sources:
        views = sources.list()
    if as_json:
        out.print_json(json.dumps([_plain(v) for v in views]))
        return
    table = Table(title="synced folders")
    for column in ("id", "folder", "collection", "every", "last scan", "status", "counts"):
        table.add_column(column)
    for v in views:
        counts = ", ".join(f"{k} {n}" for k, n in (v.last_counts or {}).items() if n)
        when = v.last_finished_at.isoformat(timespec="seconds") if v.last_finished_at else "never"
        status = "scanning" if v.scanning else (v.last_status or "")
        table.add_row(str(v.id), v.path, v.collection, f"{v.interval_s}s", when, status, counts)
    out.print(table)


@sync_command.command("remove")
@click.argument("source_id", type=int)
@click.pass_obj
def remove(settings: Settings, source_id: int) -> None:
    """Stop syncing a folder (its documents stay in the collection)."""
    with _sources(settings) as sources:
        view = sources.remove(source_id)
        _audit(sources, SYNC_REMOVE, view)
    out.print(f"no longer syncing {view.path} (its documents stay in {view.collection!r})")


@sync_command.command("run")
@click.argument("source_id", type=int, required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def run(settings: Settings, source_id: int | None, as_json: bool) -> None:
    """Scan now (one folder, or all), then index what was added or changed."""
    from ingest.factory import build_ingest_service
    from ingest.folder_sync import FolderSync

    with _sources(settings) as sources:
        ids = [source_id] if source_id is not None else [v.id for v in sources.list()]
        for sid in ids:
            sources.get(sid)  # a clear "no synced folder" before the model loads
    service = build_ingest_service(settings)
    reports = []
    try:
        sync = FolderSync(
            service,
            settle_s=settings.sync_settle_s,
            files_per_s=settings.sync_files_per_s,
        )
        for sid in ids:
            report = sync.scan(sid)
            # Also what an earlier run stored and did not live to process (killed, say).
            left = service.pending(report.collection_id) if report.collection_id else []
            todo = list(dict.fromkeys([*report.pending, *left]))  # in order, once each
            for doc_id in todo:
                service.process(doc_id)
            if todo or report.deleted:
                service.publish(report.collection_id)
            reports.append(report)
    finally:
        service.close()
    if as_json:
        out.print_json(json.dumps([r.as_dict() for r in reports]))
        return
    for r in reports:
        counts = ", ".join(f"{k} {n}" for k, n in r.counts().items() if n) or "nothing"
        out.print(
            f"folder {r.source_id}: {r.status}: {counts}" + (f" ({r.error})" if r.error else "")
        )


def _audit(sources: SyncSources, action: str, view: SourceView) -> None:
    AuditLog(sources.db).record(
        action, target=view.collection, details={"path": view.path, "via": "docqa sync"}
    )


def _plain(v: SourceView) -> dict[str, object]:
    return {
        "id": v.id,
        "path": v.path,
        "collection": v.collection,
        "interval_s": v.interval_s,
        "include": v.include,
        "exclude": v.exclude,
        "last_finished_at": v.last_finished_at.isoformat() if v.last_finished_at else None,
        "last_status": v.last_status,
        "last_error": v.last_error,
        "last_counts": v.last_counts,
        "scanning": v.scanning,
    }
