"""``docqa summarize``, run as a real process over a real data dir."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from ingest.factory import build_ingest_service
from ingest.runner import run_ingest
from qa.retrieval.embedder import Embedder
from qa.settings import Settings
from qa.store.db.engine import Database
from qa.store.db.models import Document
from tests.conftest import SAMPLES
from tests.worker.test_cli import docqa


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    root = tmp_path_factory.mktemp("summarize-cli") / "var"
    settings = Settings(data_dir=root)
    service = build_ingest_service(settings, embedder=embedder)
    try:
        run_ingest(service, [SAMPLES], "handbook")
    finally:
        service.close()
        service.db.dispose()
    return root


def doc_ids(data: Path) -> dict[str, str]:
    db = Database(Settings(data_dir=data).db_url)
    try:
        with db.session() as s:
            return {d.original_name.rsplit("/", 1)[-1]: d.id for d in s.scalars(select(Document))}
    finally:
        db.dispose()


def test_document_summary_as_markdown_and_json(data: Path, tmp_path: Path) -> None:
    travel = doc_ids(data)["travel-and-expenses.pdf"]
    run = docqa(data, "summarize", travel[:8])
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("# Summary of")
    assert "Extractive summary" in run.stdout  # no model in this data dir
    bullets = [line for line in run.stdout.splitlines() if line.startswith("- ")]
    assert 3 <= len(bullets) <= 10
    assert all(line.rstrip().endswith(")") and "(p" in line for line in bullets)

    out = tmp_path / "travel.json"
    run = docqa(data, "summarize", travel, "--json", "--out", str(out), "--max-statements", "2")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and f"wrote {out}" in run.stderr.replace("\n", "")
    result = json.loads(out.read_text())
    assert result["document_id"] == travel and len(result["statements"]) <= 2
    assert all(set(s["pages"]) <= set(range(1, 10)) for s in result["statements"])


def test_collection_summary(data: Path) -> None:
    run = docqa(data, "summarize", "--collection", "handbook")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("# Summary of collection handbook")
    assert "## Across the collection" in run.stdout
    assert run.stdout.count("\n## ") == 5  # the synthesis and one section per document


def test_generative_with_a_built_model(data: Path, tmp_path: Path, built_int8: Path) -> None:
    copy = tmp_path / "var"
    shutil.copytree(data, copy)
    shutil.copytree(built_int8, copy / "model")
    travel = doc_ids(copy)["travel-and-expenses.pdf"]
    run = docqa(copy, "summarize", travel, "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["model"] == "generative"
    windows = [set(w["pages"]) for w in result["windows"]]
    assert all(any(set(s["pages"]) <= w for w in windows) for s in result["statements"])
    extractive = docqa(copy, "summarize", travel, "--extractive")
    assert "Extractive summary" in extractive.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give a document id prefix or --collection"),
        (("abc", "--collection", "handbook"), "give a document id prefix or --collection"),
        (("zz-not-hex",), "in hex"),
        (("ffffffffff",), "no document id starts with"),
        (("--collection", "nope"), "no collection named 'nope'"),
        (("",), "in hex"),
    ],
)
def test_usage_errors(data: Path, args: tuple[str, ...], message: str) -> None:
    run = docqa(data, "summarize", *args)
    assert run.returncode != 0
    assert message in " ".join((run.stderr + run.stdout).split())


def test_an_ambiguous_prefix_is_refused(data: Path, tmp_path: Path) -> None:
    copy = tmp_path / "var"
    shutil.copytree(data, copy)
    db = Database(Settings(data_dir=copy).db_url)
    try:
        with db.session() as s:
            coll = s.scalars(select(Document.collection_id)).first()
            for n in range(2):  # two ids that share their first nine characters
                s.add(
                    Document(
                        id=f"abcdef012{n}" + "0" * 30,
                        collection_id=coll,
                        sha256=str(n) * 64,
                        original_name=f"twin-{n}.txt",
                        size_bytes=1,
                        status="failed",
                    )
                )
            s.commit()
    finally:
        db.dispose()
    run = docqa(copy, "summarize", "abcdef012")
    assert run.returncode == 1
    assert "several documents start with 'abcdef012'" in run.stderr
    run = docqa(copy, "summarize", "abcdef0121")
    assert run.returncode == 1
    assert "twin-1.txt is failed, not indexed" in " ".join(run.stderr.split())
