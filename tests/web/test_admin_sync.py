"""Synced folders in the admin console: an admin adds a folder to a collection, it is
scanned at once in the background, its documents arrive and the collection page shows the
last sync; scan now and stop syncing; editors may not (a folder is read with the server's
rights); bad input is a clear 400 and the page says it in Chinese too."""

from __future__ import annotations

import os
import time
from html import unescape
from pathlib import Path

from bs4 import BeautifulSoup

from tests.web.conftest import WebEnv

ZH = {"Accept-Language": "zh-CN,zh;q=0.9"}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    then = time.time() - 60  # settled: not being written any more
    os.utime(path, (then, then))


def _wait_for(web: WebEnv, check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_an_admin_syncs_a_folder_into_a_collection(web: WebEnv, tmp_path: Path) -> None:
    share = tmp_path / "policies"
    _write(share / "parking.md", "# Parking\n\nThe night garage closes at 23:00 sharp.\n")
    admin = web.client("admin")
    finance = web.collections["finance"]
    added = admin.post(
        f"/admin/collections/{finance}/sync",
        data={"path": str(share), "interval": "15m", "include": "*.md, *.pdf"},
    )
    assert added.status_code == 302
    [source] = web.svc.sync_sources.list(finance)
    assert source.interval_s == 900 and source.include == ["*.md", "*.pdf"]

    def indexed() -> bool:
        docs = web.svc.library.documents(web.users["admin"], finance)
        return any(d.original_name == "policies/parking.md" and d.status == "indexed" for d in docs)

    _wait_for(web, indexed)  # scanned at once, in the background
    _wait_for(web, lambda: web.svc.sync_sources.get(source.id).last_status == "ok")

    page = admin.get(f"/admin/collections/{finance}").get_data(as_text=True)
    soup = BeautifulSoup(page, "html.parser")
    row = soup.select_one(f"#synced-folders tr[data-source='{source.id}']")
    assert row is not None and str(share) in row.get_text()
    assert "added 1" in row.get_text()
    last = soup.select_one("#last-sync")
    assert last is not None and "last sync" in last.get_text()
    zh = admin.get(f"/admin/collections/{finance}", headers=ZH).get_data(as_text=True)
    assert "上次同步" in zh and "新增 1" in zh

    _write(share / "bikes.md", "# Bikes\n\nBikes are parked in the courtyard racks.\n")
    assert admin.post(f"/admin/sync/{source.id}/run").status_code == 302

    def both() -> bool:
        docs = web.svc.library.documents(web.users["admin"], finance)
        names = {d.original_name for d in docs if d.status == "indexed"}
        return {"policies/parking.md", "policies/bikes.md"} <= names

    _wait_for(web, both)
    _wait_for(web, lambda: not web.svc.sync_sources.get(source.id).scanning)
    assert admin.post(f"/admin/sync/{source.id}/remove").status_code == 302
    assert web.svc.sync_sources.list(finance) == []
    docs = web.svc.library.documents(web.users["admin"], finance)
    assert "policies/bikes.md" in {d.original_name for d in docs}, "its documents stay"
    actions = [e.action for e in web.svc.audit.list(limit=20)]
    assert {"sync_add", "sync_run", "sync_remove"} <= set(actions)


def test_only_admins_sync_folders_and_bad_input_is_told(web: WebEnv, tmp_path: Path) -> None:
    handbook = web.collections["handbook"]
    editor = web.client("editor")  # may write the handbook, but not read server folders
    denied = editor.post(f"/admin/collections/{handbook}/sync", data={"path": str(tmp_path)})
    assert denied.status_code == 403
    admin = web.client("admin")
    cases = [
        ({"path": str(tmp_path / "nope"), "interval": "10m"}, "no folder at", "处没有文件夹"),
        ({"path": str(tmp_path), "interval": "often"}, "an interval is", "间隔须为"),
        ({"path": str(tmp_path), "interval": "5s"}, "between 60 s", "间隔须在"),
        ({"interval": "10m"}, "the field 'path' is required", "字段 'path' 为必填项"),
    ]
    for form, english, chinese in cases:
        resp = admin.post(f"/admin/collections/{handbook}/sync", data=form)
        assert resp.status_code == 400 and english in unescape(resp.get_data(as_text=True)), form
        resp = admin.post(f"/admin/collections/{handbook}/sync", data=form, headers=ZH)
        assert resp.status_code == 400 and chinese in unescape(resp.get_data(as_text=True)), form
    assert admin.post("/admin/sync/999999/run").status_code == 404
    assert web.svc.sync_sources.list() == []
