"""The product as the README ships it: ``make demo``'s commands, relative paths and all.

``make demo`` runs ``docqa ingest samples/docs --collection handbook`` and ``docqa serve``
from the repository root, with no options: the data dir is the relative default ``var``.
Here the same commands run in a fresh folder that holds ``samples`` the way the repository
does (a link to it), so the user's own ``./var`` is never touched. The only change is the
port (``DOCQA_PORT``), as two test processes may run at once.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.browser.conftest import Shots, ask, last_answer, wait_answer_state
from tests.web.live import REPO, LiveServer, docqa_command

QUESTION = "What is the hotel limit in London?"
PDF = "travel-and-expenses.pdf"

#: counts the pixels of a drawn canvas that are not near-white
INKED_PIXELS = """(canvas) => {
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let inked = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i] < 200 || data[i + 1] < 200 || data[i + 2] < 200) inked += 1;
  }
  return inked;
}"""


class DemoServer(LiveServer):
    """``docqa serve`` with the demo's defaults, in ``root`` as its working directory."""

    def __init__(self, root: Path) -> None:
        super().__init__(root / "var", name="demo")
        self.root = root

    def cwd(self) -> Path:
        return self.root

    def environment(self) -> dict[str, str]:
        return demo_environment(self.root, port=self.port)

    def command(self) -> list[str]:
        return [*docqa_command(), "serve"]


def demo_environment(root: Path, *, port: int | None = None) -> dict[str, str]:
    """The caller's environment without docqa settings (CI's cache folder kept)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCQA_")}
    if "DOCQA_CACHE_DIR" in os.environ:
        env["DOCQA_CACHE_DIR"] = os.environ["DOCQA_CACHE_DIR"]
    env.update({"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "XDG_RUNTIME_DIR": str(root)})
    if port is not None:
        env["DOCQA_PORT"] = str(port)
    return env


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    root = tmp_path_factory.mktemp("demo")
    (root / "samples").symlink_to(REPO / "samples")
    ingest = subprocess.run(
        [*docqa_command(), "ingest", "samples/docs", "--collection", "handbook"],
        cwd=root,
        env=demo_environment(root),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    with DemoServer(root) as server:
        yield server


def first_admin(server: DemoServer) -> tuple[str, str]:
    """The admin account ``docqa serve`` printed on its first start."""
    log = server.log_tail(20_000)
    user = re.search(r"username: (\S+)", log)
    password = re.search(r"password: (\S+)", log)
    assert user and password, f"no first-admin lines in the log:\n{log}"
    return user.group(1), password.group(1)


def sign_in_as_admin(page: Any, server: DemoServer) -> None:
    username, password = first_admin(server)
    page.goto(server.url + "/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#sign-in")
    page.wait_for_url(server.url + "/")
    page.wait_for_selector("body[data-ready='1']")


def pdf_citation(message: Any) -> Any:
    """The first ``[n]`` of the answer that cites the travel PDF."""
    sources = message.locator(".sources li.source")
    for i in range(sources.count()):
        item = sources.nth(i)
        if PDF in (item.text_content() or "") + (
            item.locator("a").first.get_attribute("title") or ""
        ):
            n = item.get_attribute("data-n")
            return message.locator(f".answer a.citation[data-n='{n}']").first
    raise AssertionError(f"{PDF} is not among the sources")


def test_demo_as_shipped_opens_a_cited_pdf_page_drawn_and_highlighted(
    page: Any, context: Any, demo: DemoServer, shots: Shots
) -> None:
    assert (demo.root / "var" / "docqa.db").is_file(), "the demo's data is not in ./var"
    sign_in_as_admin(page, demo)
    ask(page, QUESTION)
    assert wait_answer_state(page, ("done", "error")) == "done"
    message = last_answer(page)
    shots(page, "answer")

    with context.expect_page() as popup:
        pdf_citation(message).click()
    viewer = popup.value
    viewer.wait_for_selector("#viewer[data-ready='1']", timeout=60_000)
    cited = viewer.locator("#viewer").get_attribute("data-current-page")
    drawn = viewer.locator(f".pdf-page[data-page='{cited}']")
    assert drawn.locator("canvas").evaluate(INKED_PIXELS) > 1000, "pdf.js drew a blank page"
    marked = " ".join(drawn.locator(".textLayer .hl").all_text_contents())
    assert "220" in marked or "London" in marked, f"highlight is {marked!r}"
    shots(viewer, "viewer", full_page=False)

    download = viewer.locator("a.download").get_attribute("href")
    assert download
    original = viewer.request.get(demo.url + download)
    assert original.status == 200 and original.body()[:5] == b"%PDF-"
