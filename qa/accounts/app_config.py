"""Settings admins change at run time from the web UI, kept in the metadata DB.

Static settings (paths, URLs, model folder) live in ``qa.settings`` and the environment;
this is only for what an admin may change while the service runs. Values are read from
the database on every call, so every process (web workers, Celery workers on other
machines) sees a change at once without a restart or a cache to invalidate.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from qa.errors import InvalidInput
from qa.limits import MAX_SYSTEM_PROMPT_CHARS
from qa.messages import N_
from qa.store.db.engine import Database
from qa.store.db.models import AppConfigEntry

DEFAULT_SYSTEM_PROMPT_KEY = "default_system_prompt"
MAX_KEY_CHARS = 64


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_CHARS:
        raise InvalidInput(N_("config keys are 1 to %(max)s characters", max=MAX_KEY_CHARS))
    return key


def _plain_json(value: Any) -> Any:
    try:
        # Round trip: get() then returns exactly what the database holds.
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(N_("config values must be plain JSON: %(error)s", error=exc)) from exc


class AppConfig:
    """A small key -> JSON value store."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, key: str, default: Any = None) -> Any:
        with self.db.session() as session:
            entry = session.get(AppConfigEntry, _check_key(key))
            return default if entry is None else entry.value

    def set(self, key: str, value: Any) -> None:
        key = _check_key(key)
        value = _plain_json(value)
        with self.db.session() as session:
            for attempt in range(2):
                entry = session.get(AppConfigEntry, key)
                if entry is None:
                    session.add(AppConfigEntry(key=key, value=value))
                else:
                    entry.value = value
                try:
                    session.commit()
                    return
                except IntegrityError:  # inserted by a concurrent request: update it
                    session.rollback()
                    if attempt:
                        raise

    def unset(self, key: str) -> None:
        """Remove a key, so ``get`` returns its default again."""
        with self.db.session() as session:
            session.execute(delete(AppConfigEntry).where(AppConfigEntry.key == _check_key(key)))
            session.commit()

    def default_system_prompt(self) -> str | None:
        """The admin's replacement for ``qa.answering.prompt.DEFAULT_SYSTEM_PROMPT``, or None."""
        value = self.get(DEFAULT_SYSTEM_PROMPT_KEY)
        return value if isinstance(value, str) and value.strip() else None

    def set_default_system_prompt(self, text: str | None) -> None:
        """Set the prompt for everyone; None or blank goes back to the built-in one."""
        if text is None or (isinstance(text, str) and not text.strip()):
            self.unset(DEFAULT_SYSTEM_PROMPT_KEY)
            return
        if not isinstance(text, str):
            raise InvalidInput(N_("the system prompt must be text"))
        if len(text) > MAX_SYSTEM_PROMPT_CHARS:
            raise InvalidInput(
                N_(
                    "the system prompt must be at most %(max)s characters",
                    max=MAX_SYSTEM_PROMPT_CHARS,
                )
            )
        self.set(DEFAULT_SYSTEM_PROMPT_KEY, text)
