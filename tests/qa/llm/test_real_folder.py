"""The real Qwen3-4B-Instruct-2507 folder through the production path (issue 11, part 4).

The session's tiny model carries the real folder's tokenizer files, chat template and
generation config (``tiny_qwen.py``); these tests hold the service to them: the prompt is
the folder's template, generation ends at the folder's end tokens (151645, 151643), the
sampling defaults are the folder's, the source budget is counted in the folder's tokens,
and the real 262,144 positions build with tables for the served window only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import onnx
import pytest
from safetensors.numpy import load_file, save_file

from qa.answering.assembly import build_answer_service
from qa.answering.prompt import format_source
from qa.errors import ConfigError
from qa.llm.build import DEFAULT_CONTEXT, build_model
from qa.llm.generate import OnnxQwenGenerator
from qa.llm.manifest import MODEL_FILE, ModelManifest
from qa.llm.sampling import GENERATION_CONFIG, SamplingDefaults
from qa.retrieval.embedder import Embedder
from qa.retrieval.retriever import Passage
from qa.settings import Settings
from tests.qa.llm.tiny_qwen import REAL_FILES, REAL_QWEN3, make_tiny_qwen3

REPO = Path(__file__).resolve().parents[3]
IM_END, END_OF_TEXT = 151645, 151643
CHAT = [
    {"role": "system", "content": "Answer from the numbered sources and cite them [1]."},
    {"role": "user", "content": "出差报销的截止日期是什么？ And the hotel limit in London?"},
]


@pytest.fixture(scope="module")
def real_tokenizer():  # type: ignore[no-untyped-def]
    """The folder's tokenizer loaded straight from ../shared, independent of any build."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(REAL_QWEN3, local_files_only=True)


# -- the tiny model is the real folder --------------------------------------------------


def test_the_session_model_carries_the_real_folder(tiny_hf: Path, built_int8: Path) -> None:
    for name in REAL_FILES:
        assert (tiny_hf / name).read_bytes() == (REAL_QWEN3 / name).read_bytes(), name
    real = json.loads((REAL_QWEN3 / "config.json").read_text())
    tiny = json.loads((tiny_hf / "config.json").read_text())
    for key in ("vocab_size", "eos_token_id", "bos_token_id", "rope_theta", "tie_word_embeddings"):
        assert tiny[key] == real[key], key
    assert tiny["vocab_size"] == 151_936
    m = ModelManifest.read(built_int8)
    assert m.spec.vocab_size == 151_936 and m.eos_token_ids == [IM_END, END_OF_TEXT]
    gen = OnnxQwenGenerator(built_int8, threads=1)
    assert len(gen.tokenizer) == 151_669 and gen.vocab_limit == 151_669
    assert gen.tokenizer.encode("Hello world") == [9707, 1879]
    assert gen.tokenizer.encode("你好，世界") == [108386, 3837, 99489]


# -- the chat template ---------------------------------------------------------------------


def test_prompts_are_the_folders_own_chat_template(gen_int8, real_tokenizer) -> None:  # type: ignore[no-untyped-def]
    want = real_tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=True)
    assert gen_int8.encode(CHAT) == list(want)
    text = real_tokenizer.decode(gen_int8.encode(CHAT))
    assert text == (
        "<|im_start|>system\nAnswer from the numbered sources and cite them [1].<|im_end|>\n"
        "<|im_start|>user\n出差报销的截止日期是什么？ And the hotel limit in London?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # the template, not a fixed format: a history turn with an assistant reply renders as
    # the folder's template renders it
    turns = [*CHAT, {"role": "assistant", "content": "EUR 220 [1]."}, CHAT[1]]
    want = real_tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=True)
    assert gen_int8.encode(turns) == list(want)


def test_no_code_builds_chat_markup_by_hand() -> None:
    """A turn opened in a string (ChatML by hand) would bypass the folder's template."""
    offenders = [
        str(path.relative_to(REPO))
        for package in ("qa", "web", "cli", "worker", "ingest")
        for path in (REPO / package).rglob("*.py")
        if "<|im_start|>" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "custom",
    [
        None,  # the built-in prompt
        "Tu es un assistant. Réponds toujours, même sans source; ne dis jamais que tu ne sais pas.",
        "只用中文回答。",
    ],
)
def test_every_system_prompt_carries_the_decline_rule(
    gen_int8: OnnxQwenGenerator,
    embedder: Embedder,
    real_tokenizer,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    custom: str | None,
) -> None:
    """A custom system prompt (a user's, an admin's default, an OpenAI system message: all
    arrive as ``AskOptions.system_prompt``) replaces the built-in text, not the decline
    rule: the prompt the folder's template renders still spells out both sentences, after
    the custom text (its last word), inside the system turn."""
    from qa.answering.answer_service import AskOptions
    from qa.answering.decline import DECLINE_SENTENCES
    from qa.answering.prompt import DEFAULT_SYSTEM_PROMPT

    settings = Settings(data_dir=tmp_path / "var")
    service = build_answer_service(settings, embedder=embedder, generator=gen_int8)
    plan, _ = service.plan_prompt(
        "What is the capital of France?", [_passage(1, EN)], AskOptions(system_prompt=custom)
    )
    rendered = real_tokenizer.decode(gen_int8.encode(plan.messages))
    system_turn = rendered.split("<|im_end|>")[0]
    assert system_turn.startswith("<|im_start|>system\n" + (custom or DEFAULT_SYSTEM_PROMPT))
    for sentence in (DECLINE_SENTENCES["en"], DECLINE_SENTENCES["zh"]):
        assert f'"{sentence}"' in system_turn
        assert system_turn.index(sentence) > len(custom or DEFAULT_SYSTEM_PROMPT)
    service.db.dispose()


# -- the end tokens ------------------------------------------------------------------------


def _first_new(tokens: list[int], prompt: list[int]) -> int:
    """Index of a greedy token that is new (not in the prompt, not earlier): past it,
    swapping its embedding row with an end token's changes nothing the model saw before."""
    for k in range(2, len(tokens)):
        if tokens[k] not in prompt and tokens[k] not in tokens[:k]:
            return k
    raise AssertionError(f"no fresh token in {tokens}")


@pytest.mark.parametrize("eos", [IM_END, END_OF_TEXT])
def test_generation_stops_at_either_end_token(
    eos: int, tiny_hf: Path, gen_fp32: OnnxQwenGenerator, tmp_path: Path
) -> None:
    """A copy of the model whose tied embedding has the rows of the k-th greedy token and
    ``eos`` swapped says ``eos`` exactly where it said that token: the stream must stop
    there, with the k tokens before it and nothing of the end token."""
    prompt = gen_fp32.tokenizer.encode(
        "The travel policy: reports are due within", add_special_tokens=False
    )
    assert IM_END not in prompt and END_OF_TEXT not in prompt
    saved, gen_fp32.stop_ids = gen_fp32.stop_ids, frozenset()
    try:
        events = list(gen_fp32.stream(prompt, max_new_tokens=16, temperature=0))
    finally:
        gen_fp32.stop_ids = saved
    tokens = [t for e in events for t in e.token_ids]
    assert IM_END not in tokens and END_OF_TEXT not in tokens
    k = _first_new(tokens, prompt)

    hf = tmp_path / "hf"
    hf.mkdir()
    for path in tiny_hf.iterdir():
        if path.suffix != ".safetensors":
            (hf / path.name).symlink_to(path)
    weights = load_file(tiny_hf / "model.safetensors")
    emb = weights["model.embed_tokens.weight"]
    assert "lm_head.weight" not in weights  # tied: one matrix is both ends
    emb[[tokens[k], eos]] = emb[[eos, tokens[k]]]
    save_file(weights, str(hf / "model.safetensors"), metadata={"format": "pt"})
    build_model(hf, tmp_path / "built", precision="fp32")
    gen = OnnxQwenGenerator(tmp_path / "built", threads=1)
    assert {IM_END, END_OF_TEXT} <= gen.stop_ids
    out = list(gen.stream(prompt, max_new_tokens=16, temperature=0))
    assert out[-1].finish_reason == "stop"
    assert [t for e in out for t in e.token_ids] == tokens[:k]
    assert out[-1].stats is not None and out[-1].stats.generated_tokens == k
    assert "<|im_end|>" not in "".join(e.text for e in out)


# -- sampling defaults ---------------------------------------------------------------------


def _with_generation_config(built: Path, dest: Path, cfg: dict | None) -> Path:  # type: ignore[type-arg]
    """The built model with another generation_config.json (or none)."""
    dest.mkdir()
    for path in built.iterdir():
        if path.name != GENERATION_CONFIG:
            (dest / path.name).symlink_to(path)
    if cfg is not None:
        (dest / GENERATION_CONFIG).write_text(json.dumps(cfg))
    return dest


def test_sampling_defaults_are_the_folders_generation_config(gen_fp32: OnnxQwenGenerator) -> None:
    real = json.loads((REAL_QWEN3 / GENERATION_CONFIG).read_text())
    d = gen_fp32.sampling_defaults
    assert (d.temperature, d.top_p, d.top_k) == (real["temperature"], real["top_p"], real["top_k"])
    assert (d.temperature, d.top_p, d.top_k) == (0.7, 0.8, 20)
    saved, gen_fp32.stop_ids = gen_fp32.stop_ids, frozenset()
    try:
        # a request that sets nothing samples exactly as one that sets the folder's values
        unset = [gen_fp32.generate(CHAT, max_new_tokens=12, seed=s)[0] for s in range(4)]
        folder = [
            gen_fp32.generate(
                CHAT, max_new_tokens=12, seed=s, temperature=0.7, top_p=0.8, top_k=20
            )[0]
            for s in range(4)
        ]
        assert unset == folder and len(set(unset)) > 1  # and it does sample
    finally:
        gen_fp32.stop_ids = saved


def test_the_folder_decides_and_the_user_overrides(built_fp32: Path, tmp_path: Path) -> None:
    # A folder that asks for greedy decoding (do_sample false) gets it by default ...
    greedy_dir = _with_generation_config(
        built_fp32, tmp_path / "greedy", {"do_sample": False, "eos_token_id": [IM_END, END_OF_TEXT]}
    )
    gen = OnnxQwenGenerator(greedy_dir, threads=1)
    assert gen.sampling_defaults.temperature == 0.0
    gen.stop_ids = frozenset()
    want, _ = gen.generate(CHAT, max_new_tokens=12, temperature=0)
    assert {gen.generate(CHAT, max_new_tokens=12, seed=s)[0] for s in range(4)} == {want}
    # ... and a user's setting wins over the folder
    hot = {
        gen.generate(CHAT, max_new_tokens=12, seed=s, temperature=1.5, top_k=0, top_p=1.0)[0]
        for s in range(4)
    }
    assert len(hot) > 1
    # top_k from the folder: 1 makes sampling greedy whatever the temperature
    k1 = OnnxQwenGenerator(
        _with_generation_config(built_fp32, tmp_path / "k1", {"temperature": 1.5, "top_k": 1}),
        threads=1,
    )
    k1.stop_ids = frozenset()
    assert (k1.sampling_defaults.temperature, k1.sampling_defaults.top_p) == (1.5, 1.0)
    assert {k1.generate(CHAT, max_new_tokens=12, seed=s)[0] for s in range(3)} == {want}


def test_generation_config_missing_or_broken(tmp_path: Path) -> None:
    assert SamplingDefaults.from_model_dir(tmp_path) == SamplingDefaults(0.7, 0.8, 20)
    (tmp_path / GENERATION_CONFIG).write_text("{not json")
    with pytest.raises(ConfigError, match=r"generation_config\.json"):
        SamplingDefaults.from_model_dir(tmp_path)
    (tmp_path / GENERATION_CONFIG).write_text(json.dumps({"top_p": 0}))
    with pytest.raises(ConfigError, match="top_p"):
        SamplingDefaults.from_model_dir(tmp_path)


# -- the source budget in real tokens ------------------------------------------------------

EN = (
    "Employees submit travel expense reports within thirty days of returning, with receipts "
    "for every amount above twenty euros; the manager approves the report in the portal."
)
ZH = (
    "员工应在出差返回后三十天内提交差旅费用报告，超过二十欧元的每笔费用都必须附上收据，经理在门户中"
    "审批报告后由财务部门付款。住宿标准按城市划分，伦敦每晚不超过二百二十欧元，其他城市另有规定。"
)


def _passage(n: int, text: str) -> Passage:
    return Passage(
        chunk_id=n,
        document_id=f"doc{n}",
        document_name=f"doc{n}.md",
        document_title=None,
        collection_id=1,
        collection_name="c",
        text=text,
        page_start=1,
        page_end=1,
        char_start=0,
        char_end=len(text),
        heading_path=(),
        score=1.0 - n / 100,
        dense_rank=n,
        lexical_rank=n,
    )


def test_source_budget_is_counted_in_the_folders_tokens(
    gen_int8: OnnxQwenGenerator,
    embedder: Embedder,
    real_tokenizer,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    budget = 200
    settings = Settings(data_dir=tmp_path / "var", source_budget_tokens=budget)
    service = build_answer_service(settings, embedder=embedder, generator=gen_int8)
    tokens = lambda s: len(real_tokenizer.encode(s, add_special_tokens=False))  # noqa: E731
    # Chinese packs fewer characters into a token than English: a character budget would
    # be wrong for one of them
    assert len(ZH) / tokens(ZH) < 2 < 3.5 < len(EN) / tokens(EN)
    from qa.answering.answer_service import AskOptions

    kept: dict[str, int] = {}
    for lang, text in (("en", EN), ("zh", ZH)):
        passages = [_passage(n, text) for n in range(1, 9)]
        plan, max_new = service.plan_prompt("报销截止日期 deadline?", passages, AskOptions())
        used = sum(tokens(format_source(n, p)) for n, p in enumerate(plan.sources, 1))
        assert 0 < used <= budget
        assert plan.source_tokens <= budget
        # each source is charged its tokens plus a few for its separators, never a guess
        # from its characters
        per_source = (plan.source_tokens - used) / len(plan.sources)
        assert 0 < per_source <= 12
        # the budget is used, not wasted: one more source would not have fitted
        extra = tokens(format_source(len(plan.sources) + 1, passages[0]))
        assert plan.source_tokens + extra + per_source > budget
        prompt = gen_int8.count_tokens(plan.messages)
        assert prompt + max_new <= gen_int8.context_length
        kept[lang] = len(plan.sources)
    assert kept["zh"] < kept["en"]
    service.db.dispose()


# -- 262,144 positions, a 32,768 window ----------------------------------------------------


def test_real_max_positions_build_tables_for_the_served_window_only(tmp_path: Path) -> None:
    hf = make_tiny_qwen3(tmp_path / "hf", layers=1, max_positions=None)
    assert json.loads((hf / "config.json").read_text())["max_position_embeddings"] == 262_144
    started = time.perf_counter()
    report = build_model(hf, tmp_path / "built", precision="int8")
    seconds = time.perf_counter() - started
    assert report.manifest.spec.max_positions == 262_144
    assert report.manifest.context_length == DEFAULT_CONTEXT == 32_768
    model = onnx.load(str(tmp_path / "built" / MODEL_FILE), load_external_data=False)
    shapes = {i.name: tuple(i.dims) for i in model.graph.initializer}
    half = report.manifest.spec.head_dim // 2
    assert shapes["rotary.cos"] == shapes["rotary.sin"] == (32_768, half)
    # nothing in the graph is sized by the 262,144 positions
    assert not any(262_144 in dims for dims in shapes.values())
    # the two tables are 2 x 32,768 x 16 float32 = 4 MiB; 262K would have been 32 MiB
    assert report.model_bytes < 20 * 2**20 and seconds < 30
    gen = OnnxQwenGenerator(tmp_path / "built", threads=1)
    assert gen.context_length == 32_768
    _, last = gen.generate(CHAT, max_new_tokens=4, temperature=0)
    assert last.stats is not None and last.stats.prompt_tokens > 10
    # the served window is a setting of `docqa model build`
    from click.testing import CliRunner

    from cli.main import main as docqa

    small = tmp_path / "small"
    args = ["--data-dir", str(tmp_path / "var"), "model", "build", "--from", str(hf)]
    run = CliRunner().invoke(docqa, [*args, "--out", str(small), "--context", "4096"])
    assert run.exit_code == 0, run.output
    assert "context 4096" in run.output
    assert ModelManifest.read(small).context_length == 4096
    cos = onnx.load(str(small / MODEL_FILE), load_external_data=False).graph.initializer
    assert {tuple(i.dims) for i in cos if i.name.startswith("rotary.")} == {(4096, half)}
