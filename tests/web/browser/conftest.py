"""Real-browser fixtures: headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright) against a real ``docqa serve`` in a subprocess.

    browser           one Chromium per session
    page              a fresh context (own cookies) + page per test; uncaught page errors
                      are collected in ``page_errors`` and fail the test
    shots             numbered screenshots: $DOCQA_TEST_ARTIFACTS/screenshots/<test>-<nn>-<step>.png
    extractive_server one server per test module over a fresh copy of the seeded data dir,
                      no model: extractive answers with exact highlights
    generative_server the same with the tiny streaming Qwen3 (tests.web.live)

Playwright's own browser download is never used (no ``playwright install``). Without
/usr/bin/chromium the browser tests are skipped, unless ``CI`` is set: then they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import PASSWORDS
from tests.web.live import (
    REPO,
    LiveServer,
    artifacts_dir,
    build_streaming_model,
    copy_data_dir,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
DEFAULT_TIMEOUT_MS = 30_000


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is not installed (the browser tests drive Debian's Chromium)"
    if os.environ.get("CI"):
        pytest.fail(reason + " and CI is set: browser tests must run in CI")
    pytest.skip(reason)


def _ensure_assets() -> None:
    """The pages import their JS from web/static/vendor, built by ``make assets``."""
    vendor = REPO / "web" / "static" / "vendor"
    if (vendor / "marked" / "marked.esm.js").is_file():
        return
    make = shutil.which("make")
    if make is None:
        pytest.fail("web/static/vendor is missing and `make` is not available to build it")
    run = subprocess.run([make, "assets"], cwd=REPO, capture_output=True, text=True)
    if run.returncode != 0:
        pytest.fail(f"`make assets` failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    _require_chromium()
    _ensure_assets()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class PageWatch:
    """What a page did that a test may want to check afterwards."""

    errors: list[str] = field(default_factory=list)  # uncaught exceptions in the page
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    dialogs: list[str] = field(default_factory=list)


def watch(page: Any, into: PageWatch) -> None:
    page.on("pageerror", lambda exc: into.errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: into.console_errors.append(msg.text) if msg.type == "error" else None,
    )
    page.on("request", lambda req: into.requests.append(req.url))

    def on_dialog(dialog: Any) -> None:
        into.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)


@pytest.fixture
def page_watch() -> PageWatch:
    return PageWatch()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(DEFAULT_TIMEOUT_MS)
    try:
        yield ctx
    finally:
        ctx.close()


@contextmanager
def fresh_page(browser: Any, **options: Any) -> Iterator[Any]:
    """A page in a context of its own (viewport, locale, touch, ...: Playwright's
    ``new_context`` options); an uncaught error in the page fails the test."""
    ctx = browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **options})
    ctx.set_default_timeout(DEFAULT_TIMEOUT_MS)
    errors: list[str] = []
    pg = ctx.new_page()
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield pg
    finally:
        ctx.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def page(context: Any, page_watch: PageWatch) -> Iterator[Any]:
    # Pages the test opens later (a citation's viewer tab) are watched too.
    context.on("page", lambda opened: watch(opened, page_watch))
    pg = context.new_page()
    yield pg
    # A script that throws is a bug in the page even when the test's checks passed.
    assert not page_watch.errors, f"uncaught errors in the page: {page_watch.errors}"


class Shots:
    """Numbered full-page screenshots of one test's steps."""

    def __init__(self, test_name: str) -> None:
        self.dir = artifacts_dir() / "screenshots"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name).strip("_")
        self.count = 0
        self.paths: list[Path] = []
        for old in self.dir.glob(f"{self.prefix}-*.png"):
            old.unlink()

    def __call__(self, page: Any, step: str, *, full_page: bool = True) -> Path:
        self.count += 1
        path = self.dir / f"{self.prefix}-{self.count:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=full_page)
        self.paths.append(path)
        return path


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    return Shots(request.node.name)


# -- servers -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def streaming_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_streaming_model(tmp_path_factory.getbasetemp())


def _server(
    tmp_path_factory: pytest.TempPathFactory,
    seeded_template: Path,
    request: pytest.FixtureRequest,
    kind: str,
    model: Path | None,
) -> Iterator[LiveServer]:
    module = request.module.__name__.rsplit(".", 1)[-1]
    root = tmp_path_factory.mktemp(f"live-{kind}")
    data = copy_data_dir(seeded_template, root / "var")
    server = LiveServer(data, name=f"{module}-{kind}", model_dir=model)
    with server:
        yield server


@pytest.fixture(scope="module")
def extractive_server(
    tmp_path_factory: pytest.TempPathFactory,
    seeded_template: Path,
    request: pytest.FixtureRequest,
) -> Iterator[LiveServer]:
    yield from _server(tmp_path_factory, seeded_template, request, "extractive", None)


@pytest.fixture(scope="module")
def generative_server(
    tmp_path_factory: pytest.TempPathFactory,
    seeded_template: Path,
    streaming_model: Path,
    request: pytest.FixtureRequest,
) -> Iterator[LiveServer]:
    yield from _server(tmp_path_factory, seeded_template, request, "generative", streaming_model)


# -- helpers for the tests ---------------------------------------------------------------------


def sign_in(page: Any, server: LiveServer, username: str) -> None:
    """Through the real login form; lands on the chat page once its script is ready."""
    page.goto(server.url + "/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORDS[username])
    page.click("#sign-in")
    page.wait_for_url(server.url + "/")
    page.wait_for_selector("body[data-ready='1']")


def last_answer(page: Any) -> Any:
    return page.locator("#messages .message.assistant").last


def wait_answer_state(page: Any, states: tuple[str, ...], timeout_ms: int = 60_000) -> str:
    """Wait until the newest assistant message is in one of ``states``; return it."""
    page.wait_for_function(
        """(states) => {
            const all = document.querySelectorAll('#messages .message.assistant');
            const last = all[all.length - 1];
            return last !== undefined && states.includes(last.dataset.state);
        }""",
        arg=list(states),
        timeout=timeout_ms,
    )
    state: str = last_answer(page).get_attribute("data-state")
    return state


def ask(page: Any, question: str) -> None:
    page.fill("#question", question)
    page.click("#ask")
