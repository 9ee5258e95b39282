"""``docqa backup`` and ``docqa restore``: one consistent snapshot of a data dir, and back.

A backup is one uncompressed tar file (originals are mostly compressed formats already)::

    db/docqa.sqlite            SQLite: the online backup API's copy (one file, no WAL)
    db/docqa.pgdump            PostgreSQL: ``pg_dump --format=custom``
    blobs/ab/cd/<sha256>       every original a document of the snapshot references
    indexes/c<id>/CURRENT      per collection of the snapshot, its published version
    indexes/c<id>/versions/v<n>/...
    manifest.json              written last: format version, docqa version, created time,
                               database kind, schema revision, counts, index versions,
                               pending documents, and size + sha256 of every member

It is written to a temp name beside OUT and renamed at the end, so a failed backup leaves
nothing under OUT; an existing OUT is never overwritten.

**Consistency.** The database is the source of truth and is snapshotted first, while the
service runs (SQLite's backup API reads one WAL snapshot and holds no writer up; pg_dump
runs on a snapshot exported from a REPEATABLE READ transaction, in which the referenced
originals and the counts are read too). Then the originals that snapshot references are
copied. An original is placed before its document row commits (``blob_refs``), so every
document of the snapshot had its original in place; one can vanish afterwards only when
every document holding it was deleted after the snapshot. Locking it could not bring it
back, so the backup starts again from a new snapshot (up to ``ATTEMPTS`` times) and
otherwise fails saying why; a missing original the live database still references is a
damaged blob store and fails at once. Every original is hashed while it is copied and
must match its name. Last, each collection's current index version is copied while its
publish lock is held (a publish would otherwise remove it mid-copy). It may be a little
older or newer than the database snapshot: restore compares it with the restored chunks
and republishes what differs.

**Pending documents** (queued, processing) are in the snapshot with their originals, and
restore reports them: ``docqa serve`` queues them again when it starts (the reconciler in
scaled mode), so no upload is lost.

Not in a backup: the secret key (sessions are signed with a new one: users sign in
again), the built language model and derived model caches (rebuild or copy them).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import numpy as np
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import make_url

from qa.accounts.audit import BACKUP, RESTORE, AuditLog
from qa.errors import Conflict, IndexUnavailable, InvalidInput, StorageError
from qa.retrieval.bm25 import BM25Index
from qa.retrieval.index_store import CURRENT_FILE, IndexStore
from qa.retrieval.publish import Published
from qa.settings import Settings
from qa.store.blobstore import BlobStore
from qa.store.db.engine import Database
from qa.store.db.models import Chunk, Collection, DocStatus, Document, Embedding, utcnow
from qa.store.fsutil import fsync_path

FORMAT = "docqa-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SQLITE_MEMBER = "db/docqa.sqlite"
PG_MEMBER = "db/docqa.pgdump"
#: snapshots taken before giving up when deletes keep removing referenced originals
ATTEMPTS = 3

#: the only member names a backup may hold (nothing else is ever extracted)
_MEMBER = re.compile(
    r"db/docqa\.(sqlite|pgdump)"
    r"|blobs/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}"
    r"|indexes/c[0-9]{1,12}/CURRENT"
    r"|indexes/c[0-9]{1,12}/versions/v[0-9]{8}/[A-Za-z0-9][A-Za-z0-9._-]{0,99}"
)
_BLOCK = 1 << 20
#: tables counted in the manifest and the restore report
COUNTED = (
    "collections",
    "documents",
    "chunks",
    "users",
    "groups",
    "collection_grants",
    "chats",
    "chat_messages",
)


@dataclass(frozen=True)
class PendingDocument:
    id: str
    name: str
    status: str


@dataclass
class BackupReport:
    path: Path
    bytes: int
    database: str
    counts: dict[str, int]
    originals: int
    index_versions: dict[str, str]
    pending: list[PendingDocument]
    #: snapshots taken (more than one when deletes removed referenced originals meanwhile)
    attempts: int = 1


@dataclass
class RestoreReport:
    data_dir: Path
    database: str
    created_at: str
    counts: dict[str, int]
    originals: int
    #: collections whose index came from the backup as it was
    kept_indexes: list[str] = field(default_factory=list)
    #: collections republished (missing from the backup or not matching the database)
    republished: list[Published] = field(default_factory=list)
    #: documents that were queued or processing: ``docqa serve`` queues them again
    pending: list[PendingDocument] = field(default_factory=list)


@dataclass
class _Snapshot:
    file: Path
    member: str
    revision: str | None
    counts: dict[str, int]
    shas: list[str]
    collection_ids: list[int]
    pending: list[PendingDocument]


class _OriginalVanished(Exception):
    """A referenced original was released after the snapshot (its documents deleted)."""


def docqa_version() -> str:
    try:
        return metadata.version("docqa")
    except metadata.PackageNotFoundError:
        return "unknown"


def database_kind(url: str) -> str:
    """``sqlite`` or ``postgresql`` (whatever the driver part of the URL says)."""
    return str(make_url(url).get_backend_name())


# -- backup ----------------------------------------------------------------------------------


def create_backup(
    out: Path, *, db: Database, blobs: BlobStore, indexes: IndexStore, run_by: str
) -> BackupReport:
    """Write the backup of ``db``, ``blobs`` and ``indexes`` to ``out`` (see the module
    docstring) and record it in the audit log."""
    out = out.absolute()
    if out.exists() or out.is_symlink():
        raise Conflict(f"{out} already exists; a backup never overwrites a file")
    if not out.parent.is_dir():
        raise StorageError(f"cannot write {out}: {out.parent} is not a directory")
    kind = database_kind(db.url)
    for attempt in range(1, ATTEMPTS + 1):
        tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
        try:
            report = _write(tmp, kind, db, blobs, indexes)
        except _OriginalVanished:
            tmp.unlink(missing_ok=True)
            continue
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        try:
            os.link(tmp, out)  # unlike a rename, never replaces an OUT written meanwhile
            fsync_path(out.parent)
        except FileExistsError:
            raise Conflict(f"{out} already exists; a backup never overwrites a file") from None
        except OSError as exc:
            raise StorageError(f"cannot write {out}: {exc.strerror or exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        report.path, report.attempts = out, attempt
        report.bytes = out.stat().st_size
        AuditLog(db).record(
            BACKUP,
            username=run_by,
            target=out.name,
            details={
                "bytes": report.bytes,
                "database": kind,
                "counts": report.counts,
                "originals": report.originals,
                "index_versions": report.index_versions,
                "pending": len(report.pending),
                "attempts": attempt,
            },
        )
        return report
    raise StorageError(
        f"originals kept being deleted while the backup ran ({ATTEMPTS} snapshots tried);"
        " run it again when fewer deletes are going on"
    )


def _write(
    tmp: Path, kind: str, db: Database, blobs: BlobStore, indexes: IndexStore
) -> BackupReport:
    members: dict[str, dict[str, Any]] = {}
    try:
        # Readable by the owner only: it holds every document and the password hashes.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise StorageError(f"cannot write a backup in {tmp.parent}: {exc.strerror or exc}") from exc
    with (
        os.fdopen(fd, "wb") as raw,
        tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive,
        tempfile.TemporaryDirectory(dir=tmp.parent, prefix=".docqa-backup-") as scratch,
    ):
        snap = _snapshot(kind, db, Path(scratch))
        _add_file(archive, members, snap.member, snap.file)
        snap.file.unlink()
        for sha in snap.shas:
            _add_original(archive, members, db, blobs, sha)
        versions: dict[str, str] = {}
        for cid in snap.collection_ids:
            key = f"c{cid}"
            with indexes.holding_current(key) as current:
                if current is None:
                    continue
                version, vdir = current
                _add_bytes(
                    archive, members, f"indexes/{key}/{CURRENT_FILE}", f"{version}\n".encode()
                )
                for path in sorted(vdir.iterdir()):
                    if path.is_file():
                        _add_file(
                            archive, members, f"indexes/{key}/versions/{version}/{path.name}", path
                        )
                versions[key] = version
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "docqa_version": docqa_version(),
            "created_at": utcnow().isoformat(timespec="seconds"),
            "database": kind,
            "schema_revision": snap.revision,
            "counts": snap.counts,
            "originals": len(snap.shas),
            "index_versions": versions,
            "pending_documents": [p.__dict__ for p in snap.pending],
            "members": members,
        }
        _add_bytes(archive, {}, MANIFEST, json.dumps(manifest, indent=2).encode())
        archive.close()  # writes the end-of-archive blocks into raw
        try:
            raw.flush()
            os.fsync(raw.fileno())
        except OSError as exc:
            raise StorageError(f"cannot write the backup: {exc.strerror or exc}") from exc
    return BackupReport(tmp, 0, kind, snap.counts, len(snap.shas), versions, snap.pending)


def _snapshot(kind: str, db: Database, scratch: Path) -> _Snapshot:
    if kind == "sqlite":
        return _sqlite_snapshot(db, scratch)
    if kind == "postgresql":
        return _postgres_snapshot(db, scratch)
    raise StorageError(f"cannot back up a {kind} database")


def _sqlite_snapshot(db: Database, scratch: Path) -> _Snapshot:
    source_path = db.engine.url.database
    if not source_path or source_path == ":memory:":
        raise StorageError("an in-memory SQLite database has nothing to back up")
    copy = scratch / "docqa.sqlite"
    try:
        source = sqlite3.connect(source_path, timeout=30)
        target = sqlite3.connect(copy)
        try:
            # One step: the copy is one read transaction of the source (a WAL snapshot),
            # which holds no writer up; a multi-step copy would restart on every write.
            source.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            target.commit()
            snap = _read_snapshot(lambda sql: list(target.execute(sql).fetchall()))
        finally:
            target.close()
            source.close()
    except sqlite3.Error as exc:
        raise StorageError(f"could not snapshot the SQLite database: {exc}") from exc
    return _Snapshot(copy, SQLITE_MEMBER, *snap)


def _read_snapshot(
    rows: Callable[[str], list[tuple[Any, ...]]],
) -> tuple[str | None, dict[str, int], list[str], list[int], list[PendingDocument]]:
    """What the manifest says of a snapshot, read by ``rows`` from that same snapshot
    (the SQLite copy, or the transaction pg_dump dumps)."""
    revision = rows("SELECT version_num FROM alembic_version")
    return (
        str(revision[0][0]) if revision else None,
        {t: int(rows(f"SELECT count(*) FROM {t}")[0][0]) for t in COUNTED},
        [str(r[0]) for r in rows("SELECT DISTINCT sha256 FROM documents ORDER BY sha256")],
        [int(r[0]) for r in rows("SELECT id FROM collections ORDER BY id")],
        [
            PendingDocument(str(i), str(n), str(s))
            for i, n, s in rows(
                "SELECT id, original_name, status FROM documents"
                f" WHERE status IN ('{DocStatus.QUEUED}', '{DocStatus.PROCESSING}') ORDER BY id"
            )
        ],
    )


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection string for the pg_ tools, its password in the environment
    (never on a command line anyone can read in ps)."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run_tool(args: list[str], env: dict[str, str], what: str) -> None:
    tool = shutil.which(args[0])
    if tool is None:
        raise StorageError(f"{what} needs {args[0]}, which is not installed (postgresql-client)")
    try:
        done = subprocess.run([tool, *args[1:]], env=env, capture_output=True, text=True)
    except OSError as exc:
        raise StorageError(f"{what}: could not run {args[0]}: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise StorageError(f"{what}: {args[0]} failed: {detail[-1] if detail else done.returncode}")


def _postgres_snapshot(db: Database, scratch: Path) -> _Snapshot:
    dump = scratch / "docqa.pgdump"
    dsn, env = _libpq(db.url)
    with db.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            # pg_dump reads the snapshot this transaction exported, while the transaction
            # reads the originals and counts from the same one.
            snapshot_id = str(conn.execute(text("SELECT pg_export_snapshot()")).scalar_one())
            _run_tool(
                [
                    "pg_dump",
                    "--format=custom",
                    "--no-owner",
                    "--no-privileges",
                    f"--snapshot={snapshot_id}",
                    f"--file={dump}",
                    f"--dbname={dsn}",
                ],
                env,
                "backup",
            )

            snap = _read_snapshot(lambda sql: [tuple(r) for r in conn.execute(text(sql)).all()])
    return _Snapshot(dump, PG_MEMBER, *snap)


def _blob_member(sha: str) -> str:
    """An original's member name: restore moves ``blobs/`` into the blob dir as it is, so
    the name is the blob store's own layout under ``blobs/``."""
    return BlobStore(Path("blobs")).path_for(sha).as_posix()


class _Hashing:
    """A reader that hashes what passes through it (tarfile copies from it)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        block = self.fh.read(n)
        self.sha.update(block)
        return block


def _add_stream(
    archive: tarfile.TarFile,
    members: dict[str, dict[str, Any]],
    name: str,
    fh: IO[bytes],
    size: int,
) -> str:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o640, int(utcnow().timestamp())
    hashing = _Hashing(fh)
    try:
        archive.addfile(info, hashing)  # type: ignore[arg-type]
    except OSError as exc:
        raise StorageError(f"cannot write the backup: {exc.strerror or exc}") from exc
    digest = hashing.sha.hexdigest()
    members[name] = {"bytes": size, "sha256": digest}
    return digest


def _add_file(
    archive: tarfile.TarFile, members: dict[str, dict[str, Any]], name: str, path: Path
) -> None:
    with path.open("rb") as fh:
        _add_stream(archive, members, name, fh, os.fstat(fh.fileno()).st_size)


def _add_bytes(
    archive: tarfile.TarFile, members: dict[str, dict[str, Any]], name: str, data: bytes
) -> None:
    _add_stream(archive, members, name, io.BytesIO(data), len(data))


def _add_original(
    archive: tarfile.TarFile,
    members: dict[str, dict[str, Any]],
    db: Database,
    blobs: BlobStore,
    sha: str,
) -> None:
    path = blobs.path_for(sha)
    try:
        fh = path.open("rb")  # once open, a release meanwhile cannot take the bytes away
    except FileNotFoundError:
        with db.session() as session:
            still = session.scalar(select(Document.id).where(Document.sha256 == sha).limit(1))
        if still is None:
            raise _OriginalVanished(sha) from None
        raise StorageError(
            f"original {sha} of document {still} is missing from the blob store"
            " (docqa gc reports such documents); the backup was not written"
        ) from None
    with fh:
        name = _blob_member(sha)
        digest = _add_stream(archive, members, name, fh, os.fstat(fh.fileno()).st_size)
    if digest != sha:
        raise StorageError(
            f"original {sha} is damaged in the blob store (its bytes hash to {digest})"
        )


# -- restore ---------------------------------------------------------------------------------


def read_manifest(archive: tarfile.TarFile, source: Path) -> dict[str, Any]:
    try:
        member = archive.getmember(MANIFEST)
        fh = archive.extractfile(member)
        if fh is None:
            raise KeyError(MANIFEST)
        manifest = json.loads(fh.read())
    except KeyError:
        raise InvalidInput(
            f"{source} has no {MANIFEST}: not a docqa backup, or one cut short"
        ) from None
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise InvalidInput(f"{source} is damaged: cannot read its {MANIFEST} ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidInput(f"{source} is not a docqa backup")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InvalidInput(
            f"{source} has backup format version {manifest.get('format_version')!r};"
            f" this docqa ({docqa_version()}) restores version {FORMAT_VERSION}"
        )
    if not isinstance(manifest.get("members"), dict):
        raise InvalidInput(f"{source}: its {MANIFEST} lists no members")
    return manifest


@contextlib.contextmanager
def _open_archive(source: Path) -> Iterator[tarfile.TarFile]:
    if not source.is_file():
        raise InvalidInput(f"no backup file at {source}")
    try:
        archive = tarfile.open(source, "r:")  # noqa: SIM115  (closed by the with below)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidInput(
            f"{source} is not a readable docqa backup (damaged or truncated?): {exc}"
        ) from exc
    with archive:
        yield archive


def _check_schema(manifest: dict[str, Any], source: Path) -> None:
    """A backup from a newer docqa has a schema revision this one cannot migrate from:
    refused before anything is restored, not after."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from qa.store.db.engine import MIGRATIONS_DIR

    revision = manifest.get("schema_revision")
    if revision is None:
        return
    try:
        known = ScriptDirectory(str(MIGRATIONS_DIR)).get_revision(str(revision)) is not None
    except CommandError:
        known = False
    if not known:
        raise InvalidInput(
            f"{source} was made by a newer docqa ({manifest.get('docqa_version')}, schema"
            f" {revision!r}) than this one ({docqa_version()}); restore it with that version"
        )


def _check_empty_target(data_dir: Path, kind: str, database_url: str | None) -> None:
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise Conflict(f"{data_dir} is not empty; restore only into an empty or new data dir")
    if database_url is None:
        if kind != "sqlite":
            raise InvalidInput(
                f"the backup holds a {kind} database; set DOCQA_DATABASE_URL to an empty one"
            )
        return
    target_kind = database_kind(database_url)
    if target_kind != kind:
        raise InvalidInput(
            f"the backup holds a {kind} database but DOCQA_DATABASE_URL is {target_kind}"
        )
    if kind == "postgresql":
        db = Database(database_url, run_migrations=False)
        try:
            tables = inspect(db.engine).get_table_names()
        finally:
            db.dispose()
        if tables:
            raise Conflict(
                f"the database {make_url(database_url).database} is not empty ({len(tables)}"
                " tables); restore only into an empty database"
            )


def restore_backup(
    source: Path,
    *,
    data_dir: Path,
    database_url: str | None,
    publisher: Callable[[Database], Callable[[int], Published]],
    run_by: str,
) -> RestoreReport:
    """Rebuild ``data_dir`` (and the PostgreSQL database ``database_url`` names, if any)
    from the backup ``source``: both must be empty. Every member is checked against the
    manifest before anything is put in place; indexes missing from the backup or not
    matching the restored chunks are republished through ``publisher(db)``, the same
    publish step as ``docqa reindex``."""
    source, data_dir = source.absolute(), data_dir.absolute()
    # Where each part goes is the data dir layout Settings defines (read from no environment).
    layout = Settings.model_construct(data_dir=data_dir, database_url=database_url)
    placed = {"blobs": layout.blob_dir, "indexes": layout.index_dir}
    with _open_archive(source) as archive:
        manifest = read_manifest(archive, source)
        kind = str(manifest.get("database"))
        if kind not in ("sqlite", "postgresql"):
            raise InvalidInput(f"{source}: unknown database kind {kind!r}")
        _check_schema(manifest, source)
        report = _report_of(manifest, source, data_dir, kind)
        _check_empty_target(data_dir, kind, database_url)
        data_dir.mkdir(parents=True, exist_ok=True)
        staging = data_dir / f".restoring-{uuid.uuid4().hex[:8]}"
        try:
            _extract_verified(archive, manifest, source, staging)
            db_file = staging / (SQLITE_MEMBER if kind == "sqlite" else PG_MEMBER)
            if kind == "sqlite":
                os.replace(db_file, layout.sqlite_file)
            else:
                assert database_url is not None
                dsn, env = _libpq(database_url)
                _run_tool(
                    [
                        "pg_restore",
                        "--no-owner",
                        "--no-privileges",
                        "--exit-on-error",
                        "--single-transaction",
                        f"--dbname={dsn}",
                        str(db_file),
                    ],
                    env,
                    "restore",
                )
                db_file.unlink()
            for part, target in placed.items():
                if (staging / part).is_dir():
                    os.replace(staging / part, target)
        except BaseException:
            for target in (layout.sqlite_file, *placed.values()):
                if target.is_dir():
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    target.unlink(missing_ok=True)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    db = Database(layout.db_url)  # migrations run: a backup of an older docqa is brought up to date
    try:
        _republish_stale(db, IndexStore(layout.index_dir), publisher, report)
        AuditLog(db).record(
            RESTORE,
            username=run_by,
            target=source.name,
            details={
                "backup_created_at": report.created_at,
                "docqa_version": manifest.get("docqa_version"),
                "database": kind,
                "counts": report.counts,
                "originals": report.originals,
                "kept_indexes": report.kept_indexes,
                "republished": [p.collection for p in report.republished],
                "pending": len(report.pending),
            },
        )
        return report
    finally:
        db.dispose()


def _report_of(manifest: dict[str, Any], source: Path, data_dir: Path, kind: str) -> RestoreReport:
    """The restore's report as far as the manifest tells it (read before anything is
    restored: a manifest edited into nonsense is refused, not half-restored)."""
    try:
        return RestoreReport(
            data_dir,
            kind,
            str(manifest["created_at"]),
            {str(k): int(v) for k, v in dict(manifest["counts"]).items()},
            int(manifest["originals"]),
            pending=[
                PendingDocument(str(p["id"]), str(p["name"]), str(p["status"]))
                for p in manifest["pending_documents"]
            ],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"{source} has a damaged {MANIFEST}: {exc!r}") from exc


def _extract_verified(
    archive: tarfile.TarFile, manifest: dict[str, Any], source: Path, staging: Path
) -> None:
    """Extract exactly the members the manifest lists, each checked for name, type, size
    and sha256; anything missing, extra or different refuses the whole backup."""
    expected: dict[str, Any] = manifest["members"]
    seen: set[str] = set()
    try:
        for member in archive:
            name = member.name
            if name == MANIFEST:
                continue
            if not member.isfile() or not _MEMBER.fullmatch(name) or name not in expected:
                raise InvalidInput(f"{source} holds an unexpected member {name!r}")
            if name in seen:
                raise InvalidInput(f"{source} holds {name!r} twice")
            meta = expected[name]
            if member.size != meta.get("bytes"):
                raise InvalidInput(
                    f"{source}: {name} has {member.size} bytes,"
                    f" the manifest says {meta.get('bytes')}"
                )
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            fh = archive.extractfile(member)
            assert fh is not None  # a regular file
            sha = hashlib.sha256()
            with fh, target.open("xb") as out:
                while block := fh.read(_BLOCK):
                    sha.update(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            digest = sha.hexdigest()
            if digest != meta.get("sha256") or (
                name.startswith("blobs/") and name != _blob_member(digest)
            ):
                raise InvalidInput(f"{source} is damaged: {name} does not match its checksum")
            seen.add(name)
    except (tarfile.TarError, EOFError) as exc:
        raise InvalidInput(f"{source} is damaged or truncated: {exc}") from exc
    except OSError as exc:
        raise StorageError(f"cannot restore into {staging.parent}: {exc.strerror or exc}") from exc
    missing = sorted(set(expected) - seen)
    if missing:
        raise InvalidInput(
            f"{source} is incomplete: {len(missing)} members missing, e.g. {missing[0]}"
        )


def _republish_stale(
    db: Database,
    indexes: IndexStore,
    publisher: Callable[[Database], Callable[[int], Published]],
    report: RestoreReport,
) -> None:
    """Keep each restored index that holds exactly the restored chunks; republish the rest
    (missing from the backup, or published a little before or after its DB snapshot)."""
    publish: Callable[[int], Published] | None = None
    with db.session() as session:
        collections = [(c.id, c.name, c.index_key) for c in session.scalars(select(Collection))]
    for cid, name, key in sorted(collections):
        with db.session() as session:
            wanted = np.array(
                sorted(
                    session.scalars(
                        select(Chunk.id)
                        .join(Embedding, Embedding.chunk_id == Chunk.id)
                        .where(Chunk.collection_id == cid)
                    ).all()
                ),
                dtype=np.int64,
            )
        try:
            version = indexes.current_version(key)
            if version is not None:
                vdir = indexes.collection_dir(key) / "versions" / version
                if np.array_equal(np.sort(BM25Index.stored_ids(vdir)), wanted):
                    report.kept_indexes.append(name)
                    continue
        except IndexUnavailable:
            pass  # unreadable: republished below
        if publish is None:
            publish = publisher(db)
        report.republished.append(publish(cid))
