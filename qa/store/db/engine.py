"""Engine creation and schema migrations for the metadata DB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from qa.errors import ConfigError, StorageError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the web app read while an ingest writes; busy_timeout makes writers queue
    # instead of failing with "database is locked" when two processes write at once.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    # Deleted means gone: a deleted row's bytes are overwritten with zeros, not left in a
    # free page for anyone who copies the file (see Database.flush_deleted).
    cur.execute("PRAGMA secure_delete=ON")
    cur.close()


#: how long the WAL truncation after a delete waits for readers to move on
_CHECKPOINT_WAIT_MS = 2000


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"invalid database URL: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # psycopg 3 is the driver we ship; plain postgresql:// would look for psycopg2.
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to the newest revision (idempotent, safe on every start)."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.connect() as conn:
            if sqlite:
                # SQLite rebuilds a table to change it, and dropping the old copy of a
                # parent table would cascade into its children; the pragma is a no-op
                # inside a transaction, so it goes first (SQLite's documented procedure).
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                conn.commit()
            try:
                with conn.begin():
                    cfg.attributes["connection"] = conn
                    before = MigrationContext.configure(conn).get_current_revision()
                    command.upgrade(cfg, revision)
                    after = MigrationContext.configure(conn).get_current_revision()
                    # The check reads every child table (about a second per 500,000
                    # chunks): only after a migration ran, not on every start.
                    if sqlite and after != before:
                        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").first()
                        if broken is not None:
                            raise StorageError(f"migration broke a foreign key: {tuple(broken)}")
            finally:
                if sqlite:
                    conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                    conn.commit()
    except SQLAlchemyError as exc:
        raise StorageError(f"database migration failed: {exc}") from exc


class Database:
    """An engine with its session factory; one per process and database URL."""

    def __init__(self, url: str, *, run_migrations: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        if run_migrations:
            migrate(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Session:
        return self.sessions()

    def flush_deleted(self) -> bool:
        """Make the database files forget rows deleted before now; whether they did.

        SQLite (with ``secure_delete``) zeroes a deleted row in the database file, but the
        write-ahead log still holds the pages as they were written, text and all, until a
        checkpoint truncates it; readers that still use an older snapshot hold that off,
        so this waits for them only briefly and reports False (``docqa gc`` tries again).
        PostgreSQL's files are not ours: its dead rows go with its own VACUUM.
        """
        if self.engine.dialect.name != "sqlite":
            return True
        with self.engine.connect() as conn:
            conn.exec_driver_sql(f"PRAGMA busy_timeout={_CHECKPOINT_WAIT_MS}")
            try:
                busy, _log, _done = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
            finally:
                conn.exec_driver_sql("PRAGMA busy_timeout=30000")
            conn.commit()
        return not busy

    def vacuum(self) -> None:
        """Rewrite the SQLite file without its free pages (rows deleted before
        ``secure_delete`` was on may still be readable there); PostgreSQL: nothing.
        The rewrite passes through the write-ahead log: ``flush_deleted`` after it
        (``docqa gc`` does)."""
        if self.engine.dialect.name != "sqlite":
            return
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM")

    def dispose(self) -> None:
        self.engine.dispose()
