"""The embedder on the real packaged all-MiniLM-L6-v2, torch and ONNX INT8 backends.

The ONNX export runs once per session into a tmp folder (a few seconds on two cores), so
these tests stay in the default suite.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import qa.retrieval.embedder as emb_mod
from qa.errors import ConfigError, EmbeddingError
from qa.retrieval.embedder import (
    Embedder,
    SentenceTransformerEmbedder,
    clear_embedder_cache,
    cpu_quant_preset,
    default_prefixes,
    ensure_onnx_int8,
    get_embedder,
)
from qa.retrieval.tokens import Tokenizer, load_tokenizer, packaged_model_dir
from qa.settings import PACKAGED_EMBED_MODEL, Settings
from tests.conftest import CORPUS

SCIFACT = CORPUS / "retrieval" / "scifact" / "corpus.jsonl"

# Used when the shared corpus is absent: ordinary sentences of mixed length and topic.
FALLBACK_TEXTS = [
    "The mitochondria is the powerhouse of the cell and produces most of its ATP.",
    "Employees must submit travel expense reports within thirty days of returning.",
    "Vaccination reduced hospital admissions for influenza among adults over sixty-five.",
    "The quarterly revenue grew by twelve percent, driven by strong sales in Europe.",
    "To reset your password, open the portal, choose 'Forgot password' and follow the link.",
    "Deep sea vents host bacteria that draw energy from chemical reactions, not sunlight.",
    "The committee postponed the vote on the new zoning rules until next spring.",
    "Regular exercise is associated with a lower risk of cardiovascular disease.",
    "Backups of the file server run every night at two o'clock and are kept for 90 days.",
    "The novel follows a young sailor who is shipwrecked on a remote island.",
    "Insulin resistance is a hallmark of type 2 diabetes and often precedes diagnosis.",
    "Our office in Lyon is closed on public holidays and during the first week of August.",
]


def real_texts(n: int = 48) -> list[str]:
    if not SCIFACT.is_file():
        return FALLBACK_TEXTS
    texts = []
    with SCIFACT.open(encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            text = f"{doc.get('title', '')}. {doc.get('text', '')}".strip()
            if len(text) > 40:
                texts.append(text)
            if len(texts) >= n:
                break
    return texts


def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=-1))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def torch_emb(cache_dir: Path) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(PACKAGED_EMBED_MODEL, cache_dir=cache_dir)


@pytest.fixture(scope="session")
def onnx_export_seconds(cache_dir: Path) -> float:
    start = time.perf_counter()
    ensure_onnx_int8(packaged_model_dir(), "all-MiniLM-L6-v2", cache_dir)
    return time.perf_counter() - start


@pytest.fixture(scope="session")
def onnx_emb(cache_dir: Path, onnx_export_seconds: float) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(
        PACKAGED_EMBED_MODEL, backend="onnx-int8", cache_dir=cache_dir
    )


@pytest.fixture(params=["torch", "onnx-int8"])
def emb(
    request: pytest.FixtureRequest,
    torch_emb: SentenceTransformerEmbedder,
) -> SentenceTransformerEmbedder:
    if request.param == "torch":
        return torch_emb
    result: SentenceTransformerEmbedder = request.getfixturevalue("onnx_emb")
    return result


# ------------------------------------------------------------------ vectors


def test_vectors_are_normalized_float32_384(emb: SentenceTransformerEmbedder) -> None:
    vecs = emb.embed_passages(FALLBACK_TEXTS[:5])
    assert vecs.dtype == np.float32
    assert vecs.shape == (5, 384)
    assert emb.dim == 384
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    q = emb.embed_query("how long are backups kept?")
    assert q.shape == (384,)
    assert q.dtype == np.float32
    assert abs(float(np.linalg.norm(q)) - 1.0) < 1e-5


def test_deterministic_and_independent_of_batching(emb: SentenceTransformerEmbedder) -> None:
    texts = FALLBACK_TEXTS[:6]
    first = emb.embed_passages(texts)
    again = emb.embed_passages(texts)
    np.testing.assert_array_equal(first, again)
    one_by_one = np.stack([emb.embed_passages([t])[0] for t in texts])
    if emb.backend == "torch":
        # Padding in a batch must not change a text's vector beyond float noise.
        np.testing.assert_allclose(one_by_one, first, atol=1e-5)
    else:
        # Dynamic INT8 quantizes activations with one scale per tensor, computed over the
        # whole batch: a text's vector depends a little on its batch mates (measured
        # cosine >= 0.99), so only closeness can be asked for.
        assert float(cos(one_by_one, first).min()) > 0.98


def test_paraphrase_beats_unrelated(emb: SentenceTransformerEmbedder) -> None:
    q = emb.embed_query("How do plants make their food?")
    para, unrelated = emb.embed_passages(
        [
            "Plants produce sugars from sunlight, water and carbon dioxide by photosynthesis.",
            "The train to Paris leaves from platform four at noon.",
        ]
    )
    assert float(q @ para) > float(q @ unrelated) + 0.2


def test_int8_vectors_close_to_torch(
    torch_emb: SentenceTransformerEmbedder, onnx_emb: SentenceTransformerEmbedder
) -> None:
    texts = real_texts()
    sims = cos(torch_emb.embed_passages(texts), onnx_emb.embed_passages(texts))
    assert float(sims.mean()) > 0.95, sims
    assert float(sims.min()) > 0.85, sims
    # Same model name either way: stored vectors stay comparable across backends.
    assert onnx_emb.model_id == torch_emb.model_id == "all-MiniLM-L6-v2"
    assert onnx_emb.max_tokens == torch_emb.max_tokens == 256


def test_empty_input(emb: SentenceTransformerEmbedder) -> None:
    out = emb.embed_passages([])
    assert out.shape == (0, 384)
    assert out.dtype == np.float32


def test_a_lone_string_is_refused(torch_emb: SentenceTransformerEmbedder) -> None:
    with pytest.raises(TypeError):
        torch_emb.embed_passages("one string")  # type: ignore[arg-type]


def test_long_input_is_truncated_to_max_tokens(emb: SentenceTransformerEmbedder) -> None:
    long_text = " ".join(FALLBACK_TEXTS * 40)  # ~6,000 tokens
    tok = emb.tokenizer
    assert isinstance(tok, Tokenizer)
    offsets = tok.token_offsets(long_text)
    assert len(offsets) > 10 * emb.max_tokens
    # [CLS] and [SEP] take two of the max_tokens positions.
    head = long_text[: offsets[emb.max_tokens - 3][1]]
    v_long, v_head, v_tail = emb.embed_passages([long_text, head, long_text[len(head) :]])
    assert float(v_long @ v_head) > 0.999
    assert float(v_long @ v_tail) < 0.99  # the tail was really cut off, not averaged in


def test_empty_string_still_embeds(torch_emb: SentenceTransformerEmbedder) -> None:
    out = torch_emb.embed_passages(["", "text"])
    assert out.shape == (2, 384)
    assert np.isfinite(out).all()


# ------------------------------------------------------------------ prefixes


def test_prefix_table() -> None:
    assert default_prefixes("all-MiniLM-L6-v2") == ("", "")
    assert default_prefixes("multilingual-e5-small") == ("query: ", "passage: ")
    assert default_prefixes("e5-base-v2") == ("query: ", "passage: ")
    assert default_prefixes("multilingual-e5-large-instruct") == ("", "")
    q, p = default_prefixes("bge-small-en-v1.5")
    assert q.startswith("Represent this sentence") and p == ""


def test_settings_prefix_is_applied(
    cache_dir: Path, torch_emb: SentenceTransformerEmbedder
) -> None:
    prefixed = SentenceTransformerEmbedder(
        PACKAGED_EMBED_MODEL, cache_dir=cache_dir, query_prefix="query: ", passage_prefix=""
    )
    assert torch_emb.query_prefix == "" and prefixed.query_prefix == "query: "
    np.testing.assert_allclose(
        prefixed.embed_query("backup retention"),
        torch_emb.embed_passages(["query: backup retention"])[0],
        atol=1e-5,
    )
    assert float(prefixed.embed_query("x") @ torch_emb.embed_query("x")) < 0.99


# ------------------------------------------------------------------ config errors


def test_missing_model_folder(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        SentenceTransformerEmbedder(str(tmp_path / "nope"), cache_dir=cache_dir)


def test_folder_without_config(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"config\.json"):
        SentenceTransformerEmbedder(str(tmp_path), cache_dir=cache_dir)


def test_unknown_packaged_model(cache_dir: Path) -> None:
    with pytest.raises(ConfigError, match="packaged"):
        SentenceTransformerEmbedder("packaged:bge-m3", cache_dir=cache_dir)


def test_local_folder_model_id_is_folder_name(tmp_path: Path, cache_dir: Path) -> None:
    folder = tmp_path / "my-minilm"
    shutil.copytree(packaged_model_dir(), folder)
    e = SentenceTransformerEmbedder(str(folder), cache_dir=cache_dir)
    assert e.model_id == "my-minilm"
    assert e.dim == 384
    assert e.embed_passages(["hello"]).shape == (1, 384)


# ------------------------------------------------------------------ ONNX cache


def test_quant_preset_from_cpu_flags() -> None:
    assert cpu_quant_preset("flags\t: fpu avx2 avx512f avx512_vnni\n") == "avx512_vnni"
    assert cpu_quant_preset("flags\t: fpu avx2 avx512f avx512bw\n") == "avx512"
    assert cpu_quant_preset("flags\t: fpu sse4_2 avx avx2\n") == "avx2"
    assert cpu_quant_preset("Features\t: fp asimd evtstrm aes\n") == "arm64"
    assert cpu_quant_preset() in {"avx512_vnni", "avx512", "avx2", "arm64"}


def test_export_is_fast_enough_for_the_default_suite(onnx_export_seconds: float) -> None:
    # If this fails on a slower machine, the ONNX tests belong under the `slow` marker.
    assert onnx_export_seconds < 60


def test_export_layout_and_source_untouched(
    cache_dir: Path, onnx_emb: SentenceTransformerEmbedder
) -> None:
    # Only the finished folder and the lock file: no temp or fp32 leftovers.
    entries = sorted(cache_dir.iterdir())
    assert [p.name for p in entries if p.name.startswith(".")] == [f".{entries[-1].name}.lock"]
    (folder,) = [p for p in entries if p.is_dir()]
    assert folder.name.startswith("all-MiniLM-L6-v2-")
    assert (folder / "onnx" / f"model_qint8_{cpu_quant_preset()}.onnx").is_file()
    assert not list(folder.glob("*.safetensors"))
    assert not (folder / ".fp32").exists()
    # The package folder may be read-only in production: nothing is written into it.
    assert not (packaged_model_dir() / "onnx").exists()


def test_second_construction_reuses_export(
    cache_dir: Path, onnx_emb: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    (onnx_file,) = cache_dir.glob("*/onnx/*.onnx")
    mtime = onnx_file.stat().st_mtime_ns
    calls: list[Path] = []
    real_export = emb_mod.export_onnx_int8

    def counting_export(*args: object, **kwargs: object) -> Path:
        calls.append(Path(str(args[1])))
        return real_export(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(emb_mod, "export_onnx_int8", counting_export)
    again = SentenceTransformerEmbedder(
        PACKAGED_EMBED_MODEL, backend="onnx-int8", cache_dir=cache_dir
    )
    assert calls == []
    assert onnx_file.stat().st_mtime_ns == mtime
    np.testing.assert_allclose(
        again.embed_passages(FALLBACK_TEXTS[:3]), onnx_emb.embed_passages(FALLBACK_TEXTS[:3])
    )


def test_concurrent_first_use_exports_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    real_export = emb_mod.export_onnx_int8

    def counting_export(*args: object, **kwargs: object) -> Path:
        calls.append(Path(str(args[1])))
        return real_export(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(emb_mod, "export_onnx_int8", counting_export)
    results: list[tuple[Path, str]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(ensure_onnx_int8(packaged_model_dir(), "all-MiniLM-L6-v2", tmp_path))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(calls) == 1
    assert len(set(results)) == 1
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [results[0][0].name]


def test_copy_of_read_only_model_is_writable(tmp_path: Path) -> None:
    src = tmp_path / "ro"
    (src / "1_Pooling").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "1_Pooling" / "config.json").write_text("{}")
    (src / "model.safetensors").write_bytes(b"\0" * 16)
    for p in (src / "config.json", src / "1_Pooling" / "config.json", src / "model.safetensors"):
        p.chmod(0o444)
    dst = tmp_path / "copy"
    emb_mod._copy_model_files(src, dst)
    assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file()) == [
        "1_Pooling/config.json",
        "config.json",
    ]
    assert os.stat(dst / "config.json").st_mode & stat.S_IWUSR


def test_corrupt_onnx_file_is_an_embedding_error(
    tmp_path: Path, cache_dir: Path, onnx_emb: SentenceTransformerEmbedder
) -> None:
    (good,) = [p for p in cache_dir.iterdir() if p.is_dir()]
    bad = tmp_path / good.name
    (bad / "onnx").mkdir(parents=True)
    for f in good.rglob("*"):
        if f.is_file():
            (bad / f.relative_to(good)).parent.mkdir(parents=True, exist_ok=True)
            (bad / f.relative_to(good)).write_bytes(f.read_bytes())
    (onnx_file,) = bad.glob("onnx/*.onnx")
    onnx_file.write_bytes(b"not a protobuf")
    with pytest.raises(EmbeddingError, match="ONNX") as info:
        SentenceTransformerEmbedder(PACKAGED_EMBED_MODEL, backend="onnx-int8", cache_dir=tmp_path)
    assert info.value.__cause__ is not None


# ------------------------------------------------------------------ protocol and factory


class FakeEmbedder(Embedder):
    """What a test elsewhere would use: ``_encode``, ``tokenizer`` and the attributes."""

    model_id = "fake"
    dim = 4
    max_tokens = 16
    passage_prefix = "p: "

    def __init__(self, wrong_shape: bool = False) -> None:
        self.seen: list[str] = []
        self.wrong_shape = wrong_shape

    @property
    def tokenizer(self) -> Tokenizer:
        return load_tokenizer(packaged_model_dir())

    def _encode(self, texts: list[str]) -> np.ndarray:
        self.seen.extend(texts)
        n = len(texts) + (1 if self.wrong_shape else 0)
        return np.eye(n, self.dim, dtype=np.float64)


def test_base_class_applies_prefix_and_checks_shape() -> None:
    fake = FakeEmbedder()
    out = fake.embed_passages(["a", "b"])
    assert out.dtype == np.float32 and out.shape == (2, 4)
    assert fake.seen == ["p: a", "p: b"]
    assert fake.embed_passages([]).shape == (0, 4)
    with pytest.raises(EmbeddingError, match="shape"):
        FakeEmbedder(wrong_shape=True).embed_passages(["a"])


@pytest.fixture
def clean_cache() -> Iterator[None]:
    clear_embedder_cache()
    yield
    clear_embedder_cache()


def test_get_embedder_loads_once_across_threads(
    tmp_path: Path, clean_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[Settings] = []
    real_build = emb_mod.build_embedder

    def counting_build(settings: Settings) -> Embedder:
        builds.append(settings)
        time.sleep(0.05)  # widen the race window
        return real_build(settings)

    monkeypatch.setattr(emb_mod, "build_embedder", counting_build)
    settings = Settings(data_dir=tmp_path)
    got: list[Embedder] = []
    threads = [
        threading.Thread(target=lambda: got.append(get_embedder(settings))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1
    assert len(got) == 4 and all(g is got[0] for g in got)
    assert isinstance(got[0], SentenceTransformerEmbedder)
    assert get_embedder(Settings(data_dir=tmp_path)) is got[0]
    other = get_embedder(Settings(data_dir=tmp_path, embed_query_prefix="query: "))
    assert other is not got[0]
    assert len(builds) == 2
