"""The model's session: a prepacked copy written at the first load and mapped after it."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from qa.errors import ModelNotBuilt
from qa.llm import session as session_mod
from qa.llm.generate import OnnxQwenGenerator
from qa.llm.manifest import MODEL_FILE
from qa.llm.session import PREPACKED_DIR, PrepackedCopy, machine_key

PROMPT = [{"role": "user", "content": "Where is the hotel limit written down?"}]


def _greedy(gen: OnnxQwenGenerator, n: int = 12) -> list[int]:
    return [t for e in gen.stream(PROMPT, max_new_tokens=n, temperature=0) for t in e.token_ids]


@pytest.fixture()
def model(built_int8: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny int8 model, so each test starts without a prepacked one."""
    out = tmp_path / "model"
    shutil.copytree(built_int8, out, ignore=shutil.ignore_patterns(PREPACKED_DIR))
    return out


def _copy(model: Path) -> PrepackedCopy:
    return PrepackedCopy.of(model, OnnxQwenGenerator(model, threads=1, prepack=False).model_key)


def test_the_first_load_writes_a_copy_that_later_loads_map_with_the_same_tokens(
    model: Path,
) -> None:
    plain = OnnxQwenGenerator(model, threads=1, prepack=False)
    assert plain.session_source == "model"
    assert not (model / PREPACKED_DIR).exists()
    expected = _greedy(plain)

    first = OnnxQwenGenerator(model, threads=1)
    assert first.session_source == "prepacked now"
    copy = _copy(model)
    assert copy.ready() and copy.size_bytes() > 0
    assert json.loads((copy.folder / "prepacked.json").read_text())["machine"] == copy.machine
    assert not [p for p in copy.folder.parent.iterdir() if p.name.startswith(".writing-")]

    second = OnnxQwenGenerator(model, threads=1)
    assert second.session_source == "prepacked"
    assert _greedy(first) == expected
    assert _greedy(second) == expected


def test_the_session_loads_on_a_thread_and_the_first_use_waits_for_it(model: Path) -> None:
    gen = OnnxQwenGenerator(model, threads=1, wait=False)
    assert _greedy(gen, 4)  # waits for the session, then answers
    assert gen.session_source in ("prepacked now", "prepacked")


def test_a_damaged_copy_is_written_again(model: Path) -> None:
    OnnxQwenGenerator(model, threads=1)
    copy = _copy(model)
    (copy.model).write_bytes(b"not an onnx graph")
    gen = OnnxQwenGenerator(model, threads=1)
    assert gen.session_source == "prepacked now"
    assert OnnxQwenGenerator(model, threads=1).session_source == "prepacked"


def test_a_model_file_replaced_under_the_same_build_key_gets_a_new_copy(model: Path) -> None:
    OnnxQwenGenerator(model, threads=1)
    graph = model / MODEL_FILE
    graph.write_bytes(graph.read_bytes())  # the same bytes, written anew: another mtime
    os.utime(graph, ns=(1, 1))
    gen = OnnxQwenGenerator(model, threads=1)
    assert gen.session_source == "prepacked now"
    assert OnnxQwenGenerator(model, threads=1).session_source == "prepacked"


def test_copies_for_another_machine_or_build_and_half_written_ones_are_removed(
    model: Path,
) -> None:
    stale = model / PREPACKED_DIR / "oldbuild-0123456789abcdef"
    stale.mkdir(parents=True)
    (stale / MODEL_FILE).write_bytes(b"x")
    killed = model / PREPACKED_DIR / ".writing-abc"  # a writer killed midway left this
    killed.mkdir()
    OnnxQwenGenerator(model, threads=1)
    assert not stale.exists() and not killed.exists()
    assert _copy(model).ready()
    assert machine_key("1.0", {"avx2"}) != machine_key("1.0", {"avx2", "avx512_vnni"})
    assert machine_key("1.0", {"avx2"}) != machine_key("1.1", {"avx2"})
    assert machine_key("1.0", {"avx2", "sse4_2"}) == machine_key("1.0", {"avx2"})


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_model_folder_loads_without_a_copy(model: Path) -> None:
    model.chmod(0o555)
    try:
        gen = OnnxQwenGenerator(model, threads=1)
    finally:
        model.chmod(0o755)
    assert gen.session_source == "model"
    assert not (model / PREPACKED_DIR).exists()


def test_an_unwritable_prepacked_folder_loads_without_a_copy(model: Path) -> None:
    (model / PREPACKED_DIR).write_text("a file where the folder should be")
    gen = OnnxQwenGenerator(model, threads=1)
    assert gen.session_source == "model"
    assert _greedy(gen, 4)


def test_too_little_free_disk_loads_without_a_copy(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The free space this machine has, times a thousand: as if the disk were nearly full.
    monkeypatch.setattr(session_mod, "_SPARE_BYTES", shutil.disk_usage(model).free * 1000)
    gen = OnnxQwenGenerator(model, threads=1)
    assert gen.session_source == "model"
    assert not _copy(model).ready()


def test_a_second_process_writing_the_copy_makes_this_one_load_plainly(model: Path) -> None:
    import fcntl

    folder = model / PREPACKED_DIR
    folder.mkdir()
    with open(folder / ".lock", "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a writer in another process
        gen = OnnxQwenGenerator(model, threads=1)
    assert gen.session_source == "model"


def test_a_model_that_does_not_load_fails_at_the_first_use(model: Path) -> None:
    (model / MODEL_FILE).write_bytes(b"broken")
    with pytest.raises(ModelNotBuilt, match="does not load"):
        OnnxQwenGenerator(model, threads=1)
    gen = OnnxQwenGenerator(model, threads=1, wait=False)
    with pytest.raises(ModelNotBuilt, match="does not load"):
        gen.wait_loaded()


def test_prepack_setting_reaches_the_generator(model: Path, tmp_path: Path) -> None:
    from qa.answering.assembly import load_generator
    from qa.settings import Settings

    settings = Settings(data_dir=tmp_path / "data", model_dir=model, llm_prepack=False)
    gen = load_generator(settings)
    assert isinstance(gen, OnnxQwenGenerator)
    assert gen.session_source == "model"
    assert Settings(data_dir=tmp_path / "data").llm_prepack is True
    os.environ["DOCQA_LLM_PREPACK"] = "0"
    try:
        assert Settings(data_dir=tmp_path / "data").llm_prepack is False
    finally:
        del os.environ["DOCQA_LLM_PREPACK"]


# -- the system prompt's KV, kept beside the copy -------------------------------------------

SYSTEM = {"role": "system", "content": "Answer from the sources and cite them."}


def _prefilled(gen: OnnxQwenGenerator, monkeypatch: pytest.MonkeyPatch) -> tuple[object, int]:
    """The prefix snapshot ``prefill_prefix`` puts in a fresh cache, and the model steps it
    took to make it."""
    from qa.llm.kv_cache import KVSessionCache

    steps = []
    real = gen._step
    monkeypatch.setattr(gen, "_step", lambda *a, **k: steps.append(1) or real(*a, **k))
    cache = KVSessionCache()
    n = gen.prefill_prefix(SYSTEM, cache)
    ids = gen._template([SYSTEM], False)
    assert n == len(ids) and cache.has_prefix(gen.model_key, ids)
    snap, _ = cache.lookup(gen.model_key, [*ids, 0])
    return snap, len(steps)


def test_a_later_start_reads_the_system_prompt_kv_instead_of_prefilling_it(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    made, steps = _prefilled(OnnxQwenGenerator(model, threads=1), monkeypatch)
    assert steps == 1
    assert len(list(_copy(model).folder.glob("prefix-*.npz"))) == 1
    read, steps = _prefilled(OnnxQwenGenerator(model, threads=1), monkeypatch)
    assert steps == 0
    for a, b in zip(made.keys + made.values, read.keys + read.values, strict=True):  # type: ignore[attr-defined]
        assert np.array_equal(a, b)
    # and the first question after such a start answers as after a prefill
    plain = OnnxQwenGenerator(model, threads=1, prepack=False)
    from qa.llm.kv_cache import KVSessionCache

    prompt = [SYSTEM, *PROMPT]
    cache = KVSessionCache()
    reader = OnnxQwenGenerator(model, threads=1)
    reader.prefill_prefix(SYSTEM, cache)
    ask = {"max_new_tokens": 8, "temperature": 0}
    got = [t for e in reader.stream(prompt, session_cache=cache, **ask) for t in e.token_ids]
    want = [t for e in plain.stream(prompt, **ask) for t in e.token_ids]
    assert got == want


def test_a_damaged_or_mismatched_stored_prefix_is_prefilled_again(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _prefilled(OnnxQwenGenerator(model, threads=1), monkeypatch)
    (stored,) = _copy(model).folder.glob("prefix-*.npz")
    stored.write_bytes(b"PK\x03\x04 truncated")
    _, steps = _prefilled(OnnxQwenGenerator(model, threads=1), monkeypatch)
    assert steps == 1
    # a file under the right name with another prompt's tokens is not trusted either
    import numpy as np

    with np.load(stored) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["tokens"] = arrays["tokens"][::-1].copy()
    with open(stored, "wb") as f:
        np.savez(f, **arrays)
    _, steps = _prefilled(OnnxQwenGenerator(model, threads=1), monkeypatch)
    assert steps == 1


def test_without_a_copy_the_system_prompt_kv_is_not_stored(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, steps = _prefilled(OnnxQwenGenerator(model, threads=1, prepack=False), monkeypatch)
    assert steps == 1
    assert not (model / PREPACKED_DIR).exists()


@pytest.fixture()
def model_cli(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], Result]:
    """``docqa model <command>`` on the private model, in this process."""
    from click.testing import CliRunner

    from cli.main import main as docqa

    monkeypatch.setenv("DOCQA_MODEL_DIR", str(model))
    runner = CliRunner(env={"COLUMNS": "240"})
    return lambda command: runner.invoke(
        docqa, ["--data-dir", str(tmp_path / "var"), "model", command]
    )


def test_model_info_says_whether_this_machine_has_a_prepacked_copy(
    model: Path, model_cli: Callable[[str], Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = model_cli("info")
    assert before.exit_code == 0, before.output
    assert "none yet: written at the next load" in before.output
    OnnxQwenGenerator(model, threads=1)
    after = model_cli("info")
    assert "none yet" not in after.output and "GB, mapped at load" in after.output
    monkeypatch.setenv("DOCQA_LLM_PREPACK", "0")
    off = model_cli("info")
    assert "off (DOCQA_LLM_PREPACK=0)" in off.output


def test_model_prepack_writes_the_copy_ahead_of_the_first_start(
    model: Path,
    model_cli: Callable[[str], Result],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from cli.main import main as docqa

    runner = CliRunner(env={"COLUMNS": "240"})
    first = model_cli("prepack")
    assert first.exit_code == 0, first.output
    assert "prepacked for this machine in" in first.output and _copy(model).ready()
    assert OnnxQwenGenerator(model, threads=1).session_source == "prepacked"
    again = model_cli("prepack")
    assert again.exit_code == 0 and "already prepacked for this machine" in again.output
    # a folder the copy can't go into: a clear error, not a traceback
    shutil.rmtree(model / PREPACKED_DIR)
    (model / PREPACKED_DIR).write_text("a file where the folder should be")
    blocked = model_cli("prepack")
    assert blocked.exit_code == 1 and "no prepacked copy written" in blocked.output
    monkeypatch.delenv("DOCQA_MODEL_DIR")  # <data dir>/model: nothing built there
    nothing = runner.invoke(docqa, ["--data-dir", str(tmp_path / "empty"), "model", "prepack"])
    assert nothing.exit_code == 1 and "no built model" in nothing.output
