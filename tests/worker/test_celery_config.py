"""The Celery configuration's time limits, read from settings (no broker is contacted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.errors import ConfigError
from qa.settings import Settings
from tests.ldap_server import LdapServer
from worker.celery_app import celery_config
from worker.reconcile import processing_deadline_s, summary_deadline_s

BROKER = "redis://127.0.0.1:6379/0"


def limits(tmp_path: Path, **values: int) -> tuple[int, int, int, int]:
    """(ingest hard, ingest soft, summarize hard, summarize soft) as Celery gets them."""
    config = celery_config(Settings(data_dir=tmp_path, broker_url=BROKER, **values))
    summarize = config["task_annotations"]["docqa.summarize"]
    return (
        config["task_time_limit"],
        config["task_soft_time_limit"],
        summarize["time_limit"],
        summarize["soft_time_limit"],
    )


def test_soft_limits_default_to_30_s_below_the_hard_ones(tmp_path: Path) -> None:
    assert limits(tmp_path) == (900, 870, 1800, 1770)
    short = {"broker_visibility_timeout_s": 65, "summarize_task_time_limit_s": 64}
    assert limits(tmp_path, ingest_task_time_limit_s=60, **short) == (60, 30, 64, 34)
    # at least 10 s, and half of a hard limit too short for that
    assert limits(tmp_path, ingest_task_time_limit_s=30, **short)[:2] == (30, 10)
    assert limits(tmp_path, ingest_task_time_limit_s=12, **short)[:2] == (12, 6)


def test_short_limits_for_tests_and_their_checks(tmp_path: Path) -> None:
    assert limits(
        tmp_path,
        broker_visibility_timeout_s=30,
        ingest_task_time_limit_s=25,
        ingest_task_soft_time_limit_s=20,
        summarize_task_time_limit_s=25,
        summarize_task_soft_time_limit_s=15,
    ) == (25, 20, 25, 15)
    with pytest.raises(ConfigError, match="soft time limit \\(25 s\\) must stay below"):
        limits(tmp_path, ingest_task_time_limit_s=25, ingest_task_soft_time_limit_s=25)
    with pytest.raises(ConfigError, match="below the broker visibility timeout"):
        limits(tmp_path, broker_visibility_timeout_s=30, ingest_task_time_limit_s=30)


def test_the_reconciler_waits_the_hard_limit_plus_the_grace(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        ingest_task_time_limit_s=20,
        summarize_task_time_limit_s=40,
        reconcile_processing_grace_s=5,
        reconcile_stuck_after_s=1,
    )
    assert (processing_deadline_s(settings), summary_deadline_s(settings)) == (25, 45)
    assert processing_deadline_s(Settings(data_dir=tmp_path)) == 900 + 15


def test_beat_re_syncs_the_directory_when_one_is_configured(
    tmp_path: Path, ldap: LdapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = celery_config(Settings(data_dir=tmp_path, broker_url=BROKER))
    assert set(plain["beat_schedule"]) == {"reconcile", "folder-sync"}  # no directory entry
    assert plain["beat_schedule"]["folder-sync"] == {"task": "docqa.folder_sync", "schedule": 30}
    settings = Settings(
        data_dir=tmp_path,
        broker_url=BROKER,
        ldap_sync_minutes=5,
        **ldap.settings(),  # type: ignore[arg-type]
    )
    entry = celery_config(settings)["beat_schedule"]["directory-sync"]
    assert entry == {"task": "docqa.directory_sync", "schedule": 300}
    # The task itself, run in this process against the real directory and database.
    from worker.celery_app import app
    from worker.tasks import directory_sync

    monkeypatch.setitem(app.conf, "docqa_settings", settings)
    report = directory_sync.run()
    assert report == {"checked": 0, "updated": 0, "disabled": [], "sessions_ended": 0}
