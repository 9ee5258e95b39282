"""A real ``docqa serve`` (gunicorn, one worker, gthread) in a subprocess, for browser and
load tests.

    with LiveServer(data_dir, name="portal", model_dir=model) as server:
        server.url            # http://127.0.0.1:<free port>
        server.readyz()       # the /readyz JSON
        server.log_path       # everything the server printed

The server runs over a copy of a seeded data dir (``copy_data_dir``), with the test secret
key and high rate limits, offline (``HF_HUB_OFFLINE``). ``model_dir=None`` gives extractive
answers; otherwise the built model in that folder answers.

``build_streaming_model`` builds the tiny Qwen3 the streaming tests need (see its
docstring) through the production ``build_model`` path, once per pytest session.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TEST_SECRET_KEY = "live-test-secret-key-" + "x" * 32
#: the streaming model's prompt window: sources + question + up to ~2,600 new tokens
STREAMING_MAX_POSITIONS = 4096
STREAMING_LAYERS = 32


def artifacts_dir() -> Path:
    """Where screenshots, server logs and reports go (``$DOCQA_TEST_ARTIFACTS``)."""
    path = Path(os.environ.get("DOCQA_TEST_ARTIFACTS", REPO / "var" / "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; a process already gone is fine."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def copy_data_dir(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest)
    return dest


def docqa_command() -> list[str]:
    """``docqa`` from the running interpreter's environment (the project's venv)."""
    script = Path(sys.executable).parent / "docqa"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "cli.main"]


def create_api_token(data_dir: Path, username: str, name: str) -> str:
    """An API token for ``username``, written straight into the data dir's database."""
    from qa.accounts.users import AccountService
    from qa.settings import Settings
    from qa.store.db.engine import Database

    db = Database(Settings(data_dir=data_dir).db_url)
    try:
        accounts = AccountService(db)
        user = next(u for u in accounts.list_users() if u.username == username)
        plaintext, _ = accounts.create_token(user.id, name)
        return plaintext
    finally:
        db.dispose()


class ServerError(RuntimeError):
    pass


class LiveServer:
    def __init__(
        self,
        data_dir: Path,
        *,
        name: str,
        model_dir: Path | None = None,
        threads: int = 32,
        env: dict[str, str] | None = None,
        ready_timeout: float = 180.0,
    ) -> None:
        self.data_dir = data_dir
        self.name = name
        self.model_dir = model_dir
        self.threads = threads
        self.extra_env = env or {}
        self.ready_timeout = ready_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        logs = artifacts_dir() / "server-logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> LiveServer:
        log = self.log_path.open("wb")
        try:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.cwd(),
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: teardown kills the worker too
            )
        finally:
            log.close()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def cwd(self) -> Path:
        return self.data_dir.parent  # no stray .env from the repo

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "DOCQA_SECRET_KEY": TEST_SECRET_KEY,
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
                "PYTHONUNBUFFERED": "1",
                "DOCQA_RATE_QUESTIONS_PER_MIN": "100000",
                "DOCQA_RATE_REQUESTS_PER_MIN": "100000",
                "DOCQA_RATE_SIGN_INS_PER_MIN": "100000",
                # gunicorn's control socket goes here, not to a shared ~/.gunicorn/gunicorn.ctl
                "XDG_RUNTIME_DIR": str(self.data_dir.parent),
                # no model folder at all means extractive answers
                "DOCQA_MODEL_DIR": str(self.model_dir or self.data_dir.parent / "no-model"),
            }
        )
        env.update(self.extra_env)
        return env

    def command(self) -> list[str]:
        return [
            *docqa_command(),
            "--data-dir",
            str(self.data_dir),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--threads",
            str(self.threads),
        ]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last: str = "no answer yet"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise ServerError(
                    f"docqa serve ({self.name}) exited with {self.proc.returncode}:\n"
                    + self.log_tail()
                )
            try:
                status, body = self.get("/readyz", timeout=5)
                if status == 200:
                    return
                last = f"{status} {body[:200]!r}"
            except OSError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise ServerError(f"docqa serve ({self.name}) not ready: {last}\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        # The master only: gunicorn stops its worker itself (a signal to the whole group
        # reaches the worker twice and can leave it hanging until the graceful timeout).
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)  # gunicorn: quick shutdown
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- helpers --------------------------------------------------------------------------

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def get(self, path: str, *, timeout: float = 10.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                return int(resp.status), resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode("utf-8", "replace")

    def readyz(self, *, timeout: float = 5.0) -> dict[str, Any]:
        status, body = self.get("/readyz", timeout=timeout)
        data: dict[str, Any] = json.loads(body)
        data["http_status"] = status
        return data

    def collection_ids(self) -> dict[str, int]:
        """Collection name -> id, read from the server's database."""
        from qa.settings import Settings
        from qa.store.catalog import list_collections
        from qa.store.db.engine import Database

        db = Database(Settings(data_dir=self.data_dir).db_url)
        try:
            with db.session() as session:
                return {c.name: c.id for c, _, _ in list_collections(session)}
        finally:
            db.dispose()

    def model_state(self) -> dict[str, Any]:
        model: dict[str, Any] = self.readyz()["checks"]["model"]
        return model


# -- the tiny model for streaming tests ------------------------------------------------------


#: whole words after a space, or a full stop / comma: answers then wrap like prose
_READABLE = re.compile(r" [A-Za-z]{2,}|[.,]")


def _readable_token_ids(hf_dir: Path) -> tuple[list[int], int]:
    """Token ids whose text is plain ASCII words/punctuation, and the vocabulary size."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir, local_files_only=True)
    # Byte-level BPE spells a space "Ġ" and ASCII letters, "." and "," as themselves, so the
    # token strings answer the pattern without decoding 151,669 tokens one by one (5 s).
    pieces = tok.convert_ids_to_tokens(list(range(len(tok))))
    keep = [i for i, piece in enumerate(pieces) if _READABLE.fullmatch(piece.replace("Ġ", " "))]
    return keep, len(tok)


def make_streaming_hf(out_dir: Path) -> Path:
    """A tiny random Qwen3 that writes long, readable answers.

    ``make_tiny_qwen3`` with 32 layers (a few ms per token on a CPU, so an answer of a few
    thousand tokens lasts seconds) and a 4K window (the service's full source budget fits).
    Random weights mostly emit stray bytes (invalid UTF-8 that the detokenizer holds back)
    and now and then the end token; here the rows of the tied embedding / LM head of every
    token that is not a space + an ASCII word or a full stop / comma (stray bytes, CJK
    pieces, the special tokens) are set to zero. Their logit is then exactly 0 while the best
    readable token scores above it, so greedy decoding (temperature 0) streams readable text
    until ``max_tokens``.
    """
    import torch
    from transformers import Qwen3ForCausalLM

    from tests.qa.llm.tiny_qwen import make_tiny_qwen3

    hf = make_tiny_qwen3(
        out_dir, seed=7, layers=STREAMING_LAYERS, max_positions=STREAMING_MAX_POSITIONS
    )
    keep, vocab = _readable_token_ids(hf)
    model = Qwen3ForCausalLM.from_pretrained(hf)
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        mask = torch.zeros(emb.shape[0], dtype=torch.bool)
        mask[keep] = True
        emb[~mask] = 0.0
    assert len(keep) > 30 and vocab <= emb.shape[0]
    model.save_pretrained(hf, safe_serialization=True)
    return hf


def build_streaming_model(root: Path) -> Path:
    """Build (once per ``root``) the streaming model through ``qa.llm.build.build_model``."""
    from qa.llm.build import build_model
    from qa.llm.manifest import MANIFEST

    out = root / "streaming-model"
    if (out / MANIFEST).is_file():
        return out
    hf = make_streaming_hf(root / "streaming-hf")
    # Unchecked: this model only has to stream readable tokens at a known pace (its LM head
    # makes sure of that), and on a CPU without VNNI the check rejects the dynamic kernel
    # and rebuilds all 32 layers twice (about a minute per fixture on an AMD Zen 1)
    build_model(hf, out, precision="int8", int8_kernel="dynamic", check_accuracy=False)
    return out
