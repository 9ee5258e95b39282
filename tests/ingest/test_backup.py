"""Backups that restore (issue 12, deliverable 5): ``docqa backup`` during a running
ingest, ``docqa restore`` into a fresh data dir, and the same documents, chunks, users,
grants, chats, search results and citations; pending uploads kept; bad input refused with
a clear error. Real sandbox, MiniLM, SQLite and PostgreSQL (pg_dump / pg_restore)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from cli.main import main as docqa
from ingest.pipeline import IngestService, Outcome
from ingest.runner import delete_documents
from qa.accounts.access import READ, WRITE, AccessService
from qa.accounts.audit import BACKUP, RESTORE, AuditLog
from qa.accounts.users import EDITOR, AccountService
from qa.answering.assembly import build_answer_service
from qa.answering.chats import ChatService
from qa.answering.events import Citations, Sources
from qa.errors import Conflict
from qa.library import backup
from qa.library.backup import create_backup, restore_backup
from qa.retrieval.embedder import Embedder
from qa.retrieval.publish import Published
from qa.settings import Settings
from qa.store.blobstore import BlobStore
from qa.store.db.engine import Database
from qa.store.db.models import (
    Chat,
    ChatMessage,
    Chunk,
    CollectionGrant,
    Document,
    GroupMember,
    User,
)
from tests.conftest import fresh_postgres_database
from tests.ingest.ingest_service import ingest_service
from tests.qa.conftest import PASSWORD

QUESTION = "What is the hotel limit in Lisbon?"
HANDBOOK = {
    "hotels.md": "# Hotels\n\nHotel nights in Lisbon are capped at 140 euros. In Oslo the"
    " limit is 210 euros a night, breakfast included.\n",
    "flights.md": "# Flights\n\nEconomy class is required for flights under six hours."
    " Business class needs a director's approval.\n",
    "leave.md": "# Leave\n\nEmployees get 25 days of paid leave a year, and 30 days from"
    " their tenth year.\n",
}


def _note(i: int) -> bytes:
    return (
        f"# Incoming note {i}\n\nThe quarterly report number {i} covers the warehouse"
        f" inventory of site {i * 7}. Stock counts are due on day {i + 3}.\n"
    ).encode()


def _ingest(service: IngestService, collection: str, name: str, data: bytes) -> str:
    sub = service.submit_stream(collection, io.BytesIO(data), name)
    result = service.process(sub.document_id)
    assert result.outcome == Outcome.INDEXED, result.reason
    return sub.document_id


def _library(db: Database, collection_id: int) -> dict[str, list[tuple[Any, ...]]]:
    """What a restore must bring back, as comparable rows."""
    with db.session() as s:
        docs = s.scalars(
            select(Document).where(Document.collection_id == collection_id).order_by(Document.id)
        ).all()
        chunks = s.scalars(
            select(Chunk).where(Chunk.collection_id == collection_id).order_by(Chunk.id)
        ).all()
        return {
            "documents": [
                (d.id, d.original_name, d.sha256, d.status, d.page_count, d.chunk_count)
                for d in docs
            ],
            "chunks": [
                (c.id, c.document_id, c.text, c.page_start, c.char_start, c.char_end, c.terms)
                for c in chunks
            ],
            "users": [
                (u.id, u.username, u.role, u.password_hash)
                for u in s.scalars(select(User).order_by(User.id))
            ],
            "members": [(m.group_id, m.user_id) for m in s.scalars(select(GroupMember)).all()],
            "grants": sorted(
                (g.collection_id, g.user_id or 0, g.group_id or 0, g.permission)
                for g in s.scalars(select(CollectionGrant))
            ),
            "chats": [
                (c.id, c.user_id, c.title, c.collection_ids)
                for c in s.scalars(select(Chat).order_by(Chat.id))
            ],
            "messages": [
                (m.id, m.chat_id, m.role, m.content, m.meta, m.outcome)
                for m in s.scalars(select(ChatMessage).order_by(ChatMessage.id))
            ],
        }


def _answer(settings: Settings, db: Database, embedder: Embedder, cid: int) -> list[Any]:
    """Sources and citations of the extractive answer (timings left out)."""
    service = build_answer_service(settings, db=db, embedder=embedder, use_model=False)
    events = list(service.ask(QUESTION, [cid]))
    kept = [e.to_json() for e in events if isinstance(e, Sources | Citations)]
    assert len(kept) == 2, events
    return kept


def _publisher(
    stack: ExitStack, settings: Settings, embedder: Embedder
) -> Callable[[Database], Callable[[int], Published]]:
    def publisher(db: Database) -> Callable[[int], Published]:
        return stack.enter_context(ingest_service(settings, db, embedder)).publish

    return publisher


@contextmanager
def _target_database(db: Database, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """An empty database of the live one's kind to restore into (None: SQLite in the
    target data dir)."""
    if db.engine.dialect.name == "sqlite":
        yield None
        return
    with fresh_postgres_database(request.getfixturevalue("postgres_admin_url")) as url:
        yield url


def _seed_accounts(db: Database, cid: int) -> None:
    accounts = AccountService(db)
    alice = accounts.create_user("alice", PASSWORD, role=EDITOR)
    bob = accounts.create_user("bob", PASSWORD)
    staff = accounts.create_group("staff")
    accounts.set_members(staff.id, [bob.user_id])
    access = AccessService(db)
    access.grant(cid, WRITE, user_id=alice.user_id)
    access.grant(cid, READ, group_id=staff.id)
    chats = ChatService(db)
    chat = chats.create(bob.user_id, collection_ids=[cid])
    chats.add_message(bob.user_id, chat.id, "user", QUESTION)
    chats.add_message(
        bob.user_id, chat.id, "assistant", "140 euros [1]", {"k": 6}, outcome="answered"
    )


def test_a_backup_during_an_ingest_restores_the_same_library(
    service: IngestService,
    embedder: Embedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    for name, text in HANDBOOK.items():
        _ingest(service, "handbook", name, text.encode())
    handbook = service.collection_id("handbook")
    service.publish(handbook)
    _seed_accounts(service.db, handbook)

    # An ingest runs throughout the backup; one more of its documents is committed and
    # published between the database snapshot and the copy of originals and indexes, so
    # the backed-up index of "incoming" holds chunks the snapshot does not.
    done, stop = [], threading.Event()
    advanced = threading.Condition()
    failures: list[BaseException] = []

    def ingest_loop() -> None:
        try:
            i = 0
            while not stop.is_set() and i < 20:
                _ingest(service, "incoming", f"note-{i}.md", _note(i))
                service.publish(service.collection_id("incoming"))
                with advanced:
                    done.append(i)
                    advanced.notify_all()
                i += 1
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)
            with advanced:
                advanced.notify_all()

    real_snapshot = backup._snapshot

    def snapshot_then_wait(*args: Any) -> Any:
        snap = real_snapshot(*args)
        with advanced:
            seen = len(done)
            assert advanced.wait_for(lambda: len(done) > seen or failures, timeout=60)
        return snap

    monkeypatch.setattr(backup, "_snapshot", snapshot_then_wait)
    worker = threading.Thread(target=ingest_loop)
    worker.start()
    try:
        with advanced:
            assert advanced.wait_for(lambda: done or failures, timeout=60)
        out = tmp_path / "docqa.tar"
        report = create_backup(
            out, db=service.db, blobs=service.blobs, indexes=service.indexes, run_by="test"
        )
    finally:
        stop.set()
        worker.join(timeout=120)
    assert not failures, failures
    assert report.path == out and out.is_file() and report.bytes == out.stat().st_size
    assert out.stat().st_mode & 0o777 == 0o600  # every document and the password hashes
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp files left"
    assert report.counts["users"] == 2 and report.counts["chats"] == 1
    incoming = service.collection_id("incoming")
    assert f"c{incoming}" in report.index_versions
    (event,) = AuditLog(service.db).list(action=BACKUP)
    assert event.target == "docqa.tar" and event.details["counts"] == report.counts

    target = tmp_path / "restored"
    with _target_database(service.db, request) as target_url, ExitStack() as stack:
        settings = Settings(data_dir=target, database_url=target_url, parse_timeout_s=30)
        restored = restore_backup(
            out,
            data_dir=target,
            database_url=target_url,
            publisher=_publisher(stack, settings, embedder),
            run_by="test",
        )
        # the index of "incoming" was copied after a publish the snapshot does not hold
        assert [p.collection for p in restored.republished] == ["incoming"]
        assert restored.kept_indexes == ["handbook"]
        assert restored.counts == report.counts
        db = stack.enter_context(_disposing(Database(settings.db_url)))

        assert _library(db, handbook) == _library(service.db, handbook)
        assert _answer(settings, db, embedder, handbook) == _answer(
            service.settings, service.db, embedder, handbook
        )
        # every restored document of the ingest is the live one, with its original
        restored_incoming = _library(db, incoming)
        live_incoming = _library(service.db, incoming)
        assert restored_incoming["documents"]
        live_docs = {d[0]: d for d in live_incoming["documents"]}
        pending = []
        for doc in restored_incoming["documents"]:
            if doc[3] in ("queued", "processing"):  # the snapshot caught it mid-ingest
                assert doc[:3] == live_docs[doc[0]][:3]
                pending.append(doc[0])
            else:
                assert doc == live_docs[doc[0]]
        assert len(live_docs) > len(restored_incoming["documents"])
        assert [p.id for p in restored.pending] == pending
        assert set(restored_incoming["chunks"]) < set(live_incoming["chunks"])
        blobs = BlobStore(settings.blob_dir)
        assert all(blobs.exists(sha) for _, _, sha, *_ in restored_incoming["documents"])
        _answer(settings, db, embedder, incoming)  # its republished index answers
        assert [e.details["backup_created_at"] for e in AuditLog(db).list(action=RESTORE)] == [
            restored.created_at
        ]
        # a second restore into what the first one filled is refused before it starts
        again = tmp_path / "again"
        with pytest.raises(Conflict, match="not empty"):
            restore_backup(
                out,
                data_dir=again if target_url else target,
                database_url=target_url,
                publisher=_publisher(stack, settings, embedder),
                run_by="test",
            )


@contextmanager
def _disposing(db: Database) -> Iterator[Database]:
    try:
        yield db
    finally:
        db.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_pending_uploads_are_restored_with_their_originals(
    service: IngestService, embedder: Embedder, tmp_path: Path
) -> None:
    _ingest(service, "handbook", "hotels.md", HANDBOOK["hotels.md"].encode())
    queued = service.submit_stream("handbook", io.BytesIO(_note(1)), "queued.md")
    out = tmp_path / "b.tar"
    report = create_backup(
        out, db=service.db, blobs=service.blobs, indexes=service.indexes, run_by="test"
    )
    assert [p.id for p in report.pending] == [queued.document_id]

    target = tmp_path / "restored"
    settings = Settings(data_dir=target, parse_timeout_s=30)
    with ExitStack() as stack:
        restored = restore_backup(
            out,
            data_dir=target,
            database_url=None,
            publisher=_publisher(stack, settings, embedder),
            run_by="test",
        )
        assert [(p.id, p.name, p.status) for p in restored.pending] == [
            (queued.document_id, "queued.md", "queued")
        ]
        # nothing was published before the backup: restore publishes the index itself
        assert [p.collection for p in restored.republished] == ["handbook"]
        assert restored.kept_indexes == []
        # what docqa serve does at start: the pending document is processed again
        svc = stack.enter_context(
            ingest_service(
                settings, stack.enter_context(_disposing(Database(settings.db_url))), embedder
            )
        )
        assert svc.pending() == [queued.document_id]
        assert svc.process(queued.document_id).outcome == Outcome.INDEXED


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_original_deleted_during_the_backup_starts_it_again(
    service: IngestService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshot references an original whose document is deleted before it is copied:
    the backup takes a new snapshot instead of leaving that document without its file."""
    keep = _ingest(service, "handbook", "hotels.md", HANDBOOK["hotels.md"].encode())
    gone = _ingest(service, "handbook", "leave.md", HANDBOOK["leave.md"].encode())
    handbook = service.collection_id("handbook")
    real_snapshot = backup._snapshot

    def snapshot_then_delete(*args: Any) -> Any:
        snap = real_snapshot(*args)
        if gone in [d[0] for d in _library(service.db, handbook)["documents"]]:
            delete_documents(service, [gone])
        return snap

    monkeypatch.setattr(backup, "_snapshot", snapshot_then_delete)
    report = create_backup(
        tmp_path / "b.tar",
        db=service.db,
        blobs=service.blobs,
        indexes=service.indexes,
        run_by="test",
    )
    assert report.attempts == 2 and report.counts["documents"] == 1 and report.originals == 1
    with tarfile.open(report.path) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
    with service.db.session() as s:
        sha = s.get(Document, keep).sha256  # type: ignore[union-attr]
    assert [m for m in manifest["members"] if m.startswith("blobs/")] == [
        f"blobs/{sha[:2]}/{sha[2:4]}/{sha}"
    ]


def test_a_backup_that_keeps_losing_originals_gives_up_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "var"
    Database(f"sqlite:///{data_dir / 'docqa.db'}").dispose()
    tries = []

    def always_vanished(tmp: Path, *args: Any) -> Any:
        tries.append(tmp)
        tmp.write_bytes(b"partial")
        raise backup._OriginalVanished("0" * 64)

    monkeypatch.setattr(backup, "_write", always_vanished)
    _refused(_cli(data_dir, "backup", str(tmp_path / "b.tar")), "kept being deleted")
    assert len(tries) == backup.ATTEMPTS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["var"]  # no partial file left


# -- bad input: a clear docqa error and exit status 1, never a traceback ------------------


@pytest.fixture(scope="module")
def good_backup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real backup made by the CLI (no documents: accounts and an empty DB)."""
    root = tmp_path_factory.mktemp("backup")
    Database(f"sqlite:///{root / 'var' / 'docqa.db'}").dispose()
    out = root / "good.tar"
    result = _cli(root / "var", "backup", str(out))
    assert result.exit_code == 0, result.output
    assert "backed up sqlite database" in result.output
    return out


def _cli(data_dir: Path, *args: str) -> Any:
    return CliRunner().invoke(
        docqa, ["--data-dir", str(data_dir), *args], env={"DOCQA_DATABASE_URL": None}
    )


def _refused(result: Any, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert message in " ".join(result.output.split()), result.output


def _rewritten(source: Path, dest: Path, change: Callable[[str, bytes], bytes | None]) -> Path:
    """A copy of the backup with members changed (None: left out)."""
    with tarfile.open(source) as src, tarfile.open(dest, "w") as out:
        for member in src:
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            new = change(member.name, data)
            if new is not None:
                member.size = len(new)
                out.addfile(member, io.BytesIO(new))
    return dest


def test_the_cli_restores_a_backup_and_refuses_a_second_time(
    good_backup: Path, tmp_path: Path
) -> None:
    result = _cli(tmp_path / "new", "restore", str(good_backup))
    assert result.exit_code == 0, result.output
    assert "restored the backup" in result.output
    assert (tmp_path / "new" / "docqa.db").is_file()
    _refused(_cli(tmp_path / "new", "restore", str(good_backup)), "is not empty")
    # --data-dir after the command names the target too
    result = _cli(
        tmp_path / "unused", "restore", str(good_backup), "--data-dir", str(tmp_path / "b")
    )
    assert result.exit_code == 0 and (tmp_path / "b" / "docqa.db").is_file(), result.output


def test_bad_archives_are_refused(good_backup: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"

    def restore(path: Path) -> Any:
        return _cli(target, "restore", str(path))

    _refused(restore(tmp_path / "missing.tar"), "no backup file at")
    (tmp_path / "junk.tar").write_bytes(b"not a tar file at all" * 100)
    _refused(restore(tmp_path / "junk.tar"), "not a readable docqa backup")
    data = good_backup.read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[: len(data) // 2])
    _refused(restore(tmp_path / "cut.tar"), "cut.tar is damaged")

    def version_2(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        return json.dumps({**json.loads(data), "format_version": 2}).encode()

    _refused(restore(_rewritten(good_backup, tmp_path / "v2.tar", version_2)), "format version 2")

    def future(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        return json.dumps({**json.loads(data), "schema_revision": "9999_future"}).encode()

    _refused(restore(_rewritten(good_backup, tmp_path / "new.tar", future)), "by a newer docqa")

    def nonsense(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        return json.dumps({**json.loads(data), "pending_documents": [7]}).encode()

    _refused(restore(_rewritten(good_backup, tmp_path / "odd.tar", nonsense)), "damaged manifest")

    def damaged(name: str, data: bytes) -> bytes:
        return data[:-1] + bytes([data[-1] ^ 1]) if name.startswith("db/") else data

    _refused(restore(_rewritten(good_backup, tmp_path / "bad.tar", damaged)), "checksum")

    def dropped(name: str, data: bytes) -> bytes | None:
        return None if name.startswith("db/") else data

    _refused(restore(_rewritten(good_backup, tmp_path / "short.tar", dropped)), "incomplete")
    other_kind = CliRunner().invoke(
        docqa,
        ["--data-dir", str(target), "restore", str(good_backup)],
        env={"DOCQA_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
    )
    _refused(other_kind, "holds a sqlite database but DOCQA_DATABASE_URL is postgresql")

    def smuggled(name: str, data: bytes) -> bytes:
        return data

    evil = _rewritten(good_backup, tmp_path / "evil.tar", smuggled)
    with tarfile.open(evil, "a") as archive:
        archive.addfile(tarfile.TarInfo("../../etc/passwd"), io.BytesIO(b""))
    _refused(restore(evil), "unexpected member")
    # nothing of a refused restore is left in the target
    assert not target.exists() or not any(target.iterdir())


def test_backup_refuses_an_existing_or_unwritable_out(good_backup: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    Database(f"sqlite:///{data_dir / 'docqa.db'}").dispose()
    shutil.copy(good_backup, tmp_path / "taken.tar")
    _refused(_cli(data_dir, "backup", str(tmp_path / "taken.tar")), "already exists")
    assert (tmp_path / "taken.tar").read_bytes() == good_backup.read_bytes()
    (tmp_path / "file").write_text("")
    _refused(_cli(data_dir, "backup", str(tmp_path / "file" / "b.tar")), "is not a directory")
    _refused(_cli(data_dir, "backup", "/proc/docqa.tar"), "cannot write a backup in /proc")
    _refused(_cli(tmp_path / "nothing", "backup", str(tmp_path / "b.tar")), "no docqa database")
    assert not (tmp_path / "nothing").exists()
