"""Fixtures the DB-layer tests of ``qa`` share; ``db`` (SQLite and PostgreSQL) comes from
tests/conftest.py."""

from __future__ import annotations

import pytest

from qa.accounts.users import AccountService
from qa.store.db.engine import Database

#: the password of the users these tests create
PASSWORD = "correct horse battery"


@pytest.fixture
def accounts(db: Database) -> AccountService:
    return AccountService(db)
