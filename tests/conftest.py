"""Shared fixtures: real databases (SQLite and PostgreSQL), the packaged embedding model,
and one tiny random Qwen3 built through the production ONNX path (fp32 and INT8)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from qa.llm.build import build_model
from qa.llm.generate import OnnxQwenGenerator
from qa.store.db.engine import Database
from tests.ldap_server import LdapServer
from tests.oidc_server import OidcServer
from tests.qa.llm.tiny_qwen import make_tiny_qwen3

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist the test processes share 2 cores with the workers, servers and CLIs
# they start, and torch's OpenMP pool (one thread per core in every process) then spins
# against the others: a query embedding took 170 ms instead of 12 ms, and the CI retrieval
# slice 107 s instead of 30 s (Intel Xeon, 2 cores). One thread each, inherited by every
# process a test starts. The serial phase (latency bounds) keeps the product's defaults.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
# jieba's dictionary cache and the like stay in the clone, never in the user's home.
os.environ.setdefault("DOCQA_CACHE_DIR", str(REPO / "var" / "cache"))

CORPUS = REPO.parent / "shared" / "corpus"
SAMPLES = REPO / "samples" / "docs"
POSTGRES_URL = os.environ.get(
    "DOCQA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


#: files that take minutes (real worker processes, faults, browsers), started first, the
#: longest (the worker faults, ~2.5 min) before all, so that two test processes (make test
#: hands out whole files) finish together instead of one waiting on a long tail
LONG_FIRST = (
    "tests/worker/test_faults.py",
    "tests/worker/",
    "tests/web/browser/",
    "tests/qa/test_summarize.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def long_first(item: pytest.Item) -> int:
        path = item.nodeid
        return next((i for i, prefix in enumerate(LONG_FIRST) if path.startswith(prefix)), 99)

    items.sort(key=long_first)  # stable: the order inside each group is kept


def corpus_path(*parts: str) -> Path:
    path = CORPUS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared corpus not present at {path}")
    return path


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(POSTGRES_URL)
        with engine.connect():
            pass
        engine.dispose()
    except sa.exc.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}")
    return POSTGRES_URL


@contextmanager
def fresh_postgres_database(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped (connections and all) on exit."""
    import sqlalchemy as sa

    name = f"docqa_t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with fresh_postgres_database(postgres_admin_url) as url:
        yield url


#: the two metadata databases every DB-layer test runs on
DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'docqa.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A migrated metadata DB (parametrized: SQLite and PostgreSQL), disposed afterwards."""
    database = Database(db_url)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture(scope="session")
def ldap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LdapServer]:
    """A real OpenLDAP server (tests/ldap_server.py) shared by a test process; tests that
    change the directory do it to people of their own (``new_person``)."""
    server = LdapServer(tmp_path_factory.mktemp("slapd")).start()
    yield server
    server.cleanup()


#: where the OIDC tests' docqa lives for the provider (the Flask test client's host)
OIDC_REDIRECT_URI = "http://localhost/login/oidc/callback"
OIDC_POST_LOGOUT_URI = "http://localhost/login"


@pytest.fixture(scope="session")
def oidc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcServer]:
    """A real OpenID provider (tests/oidc_server.py) shared by a test process."""
    server = OidcServer(
        tmp_path_factory.mktemp("oidc"), OIDC_REDIRECT_URI, OIDC_POST_LOGOUT_URI
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def embedder():  # type: ignore[no-untyped-def]
    """The real packaged all-MiniLM-L6-v2 (torch backend), loaded once per session."""
    from qa.retrieval.embedder import SentenceTransformerEmbedder
    from qa.settings import PACKAGED_EMBED_MODEL

    cache = Path(os.environ.get("DOCQA_TEST_MODEL_CACHE", REPO / "var" / "test-models"))
    return SentenceTransformerEmbedder(PACKAGED_EMBED_MODEL, backend="torch", cache_dir=cache)


# -- the tiny Qwen3 (session-wide: qa/llm and web tests share one build) -------------


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_qwen3(tmp_path_factory.mktemp("tiny_qwen3") / "hf")


@pytest.fixture(scope="session")
def built_fp32(tiny_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("built") / "fp32"
    build_model(tiny_hf, out, precision="fp32")
    return out


@pytest.fixture(scope="session")
def built_int8(tiny_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("built") / "int8"
    build_model(tiny_hf, out, precision="int8")
    return out


@pytest.fixture(scope="session")
def built_int8_dynamic(tiny_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("built") / "int8-dynamic"
    # the raw kernel, unchecked: parity tests measure it themselves, and on an AVX2-only
    # CPU the accuracy check would turn it into a (partly) blockwise mixed build
    build_model(tiny_hf, out, precision="int8", int8_kernel="dynamic", check_accuracy=False)
    return out


@pytest.fixture(scope="session")
def gen_fp32(built_fp32: Path) -> OnnxQwenGenerator:
    return OnnxQwenGenerator(built_fp32, threads=1)


@pytest.fixture(scope="session")
def gen_int8(built_int8: Path) -> OnnxQwenGenerator:
    return OnnxQwenGenerator(built_int8, threads=1)


@pytest.fixture(scope="session")
def torch_model(tiny_hf: Path) -> object:
    from transformers import Qwen3ForCausalLM

    return Qwen3ForCausalLM.from_pretrained(tiny_hf).eval()
