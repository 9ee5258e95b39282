"""Directory sign-in through the real login form and admin pages, against a real OpenLDAP
server: a directory account signs in, a directory group mapped by an admin grants a
collection, the re-sync takes it away again, and a directory that cannot answer gets a
clear 503 while the local admin still signs in."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select

from qa.accounts.access import READ
from qa.accounts.directory_sync import sync_directory
from qa.accounts.ldap_directory import LdapDirectory
from qa.retrieval.embedder import Embedder
from qa.store.db.models import User
from tests.ldap_server import CAROL, LdapServer, new_person
from tests.web.conftest import PASSWORDS, Client, Seeded, WebEnv, csrf_from, running_env


@pytest.fixture
def directory_web(seeded: Seeded, embedder: Embedder, ldap: LdapServer) -> Iterator[WebEnv]:
    data, db_url = seeded.copy()
    with running_env(data, embedder, db_url=db_url, **ldap.settings()) as env:
        yield env


def sign_in_form(env: WebEnv, username: str, password: str) -> tuple[Client, Any]:
    http = env.app.test_client()
    page = http.get("/login").get_data(as_text=True)
    resp = http.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_from(page)},
    )
    csrf = csrf_from(http.get("/login").get_data(as_text=True)) if resp.status_code == 302 else None
    return Client(http, csrf), resp


def readable(client: Client) -> set[str]:
    resp = client.get("/api/v1/collections")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return {c["name"] for c in resp.get_json()["collections"]}


def test_a_mapped_directory_group_grants_a_collection_until_the_directory_drops_it(
    directory_web: WebEnv, ldap: LdapServer
) -> None:
    env = directory_web
    login = env.app.test_client().get("/login").get_data(as_text=True)
    assert 'id="directory-hint"' in login
    person = new_person(ldap, "Managers")
    client, resp = sign_in_form(env, person.uid, person.password)
    assert resp.status_code == 302
    assert readable(client) == set()  # no grant yet

    # The admin makes a group, grants it the finance collection and maps the directory
    # group "Managers" to it in the console.
    admin = env.client("admin")
    team = env.svc.accounts.create_group("Finance team")
    env.svc.access.grant(env.collections["finance"], READ, group_id=team.id)
    page = admin.get("/admin/groups").get_data(as_text=True)
    assert 'id="directory-groups-ldap"' in page and "No group is mapped yet" in page
    resp = admin.post(
        "/admin/groups/directory",
        data={"directory_group": "cn=Managers,ou=groups,dc=example,dc=org", "group_id": team.id},
    )
    assert resp.status_code == 302
    page = admin.get("/admin/groups").get_data(as_text=True)
    assert "cn=managers,ou=groups,dc=example,dc=org" in page

    client, _ = sign_in_form(env, person.uid, person.password)  # next sign-in: member
    assert readable(client) == {"finance"}

    ldap.remove_member("Managers", person)
    report = sync_directory(env.svc.sign_in)
    assert report.updated >= 1
    assert readable(client) == set()  # the same session, access gone at once

    users = admin.get("/admin/users").get_data(as_text=True)
    row = users[users.index(f'data-username="{person.uid}"') :].split("</tr>")[0]
    assert ">directory</span>" in row and "Reset password" not in row
    with env.svc.db.session() as s:
        user_id = s.scalar(select(User.id).where(User.username == person.uid))
    resp = admin.post(f"/admin/users/{user_id}/password", data={"password": "a-new-password-1"})
    assert resp.status_code == 400
    assert "through the directory" in resp.get_data(as_text=True)


def test_mapping_form_errors_are_clear(directory_web: WebEnv) -> None:
    admin = directory_web.client("admin")
    team = directory_web.svc.accounts.create_group("Team")
    cases = [
        ({"directory_group": "  ", "group_id": team.id}, 400, "required"),
        ({"directory_group": "cn=x", "group_id": "abc"}, 400, "whole number"),
        ({"directory_group": "cn=x", "group_id": 999_999}, 404, "no group"),
        ({"directory_group": "x" * 2000, "group_id": team.id}, 400, "longer than"),
    ]
    for data, status, words in cases:
        resp = admin.post("/admin/groups/directory", data=data)
        assert resp.status_code == status, (data, resp.status_code)
        assert words in resp.get_data(as_text=True)
    assert admin.post("/admin/groups/directory/424242/delete").status_code == 404
    # A reader cannot map anything.
    bob = directory_web.client("bob")
    data = {"directory_group": "cn=x", "group_id": team.id}
    assert bob.post("/admin/groups/directory", data=data).status_code == 403


def test_without_a_directory_the_mapping_routes_say_so(web: WebEnv) -> None:
    admin = web.client("admin")
    assert 'id="directory-groups-ldap"' not in admin.get("/admin/groups").get_data(as_text=True)
    team = web.svc.accounts.create_group("Team")
    resp = admin.post("/admin/groups/directory", data={"directory_group": "x", "group_id": team.id})
    assert resp.status_code == 404 and "DOCQA_LDAP_URL" in resp.get_data(as_text=True)
    login = web.app.test_client().get("/login").get_data(as_text=True)
    assert 'id="directory-hint"' not in login


def test_a_directory_that_cannot_answer_gets_a_clear_503_and_locks_nobody_out(
    seeded: Seeded, embedder: Embedder, ldap: LdapServer
) -> None:
    data, db_url = seeded.copy()
    dead = ldap.settings(ldap_url="ldap://127.0.0.1:9", ldap_timeout_s=1.0)
    with running_env(data, embedder, db_url=db_url, sign_in_lockout_after=2, **dead) as env:
        for _ in range(3):
            _, resp = sign_in_form(env, CAROL.uid, CAROL.password)
            assert resp.status_code == 503
            assert "directory server can&#39;t be reached" in resp.get_data(as_text=True)
        # An outage is not the user's failed attempt: no lockout builds up.
        # The directory is back: the same person signs in at once.
        directory = env.svc.sign_in.directory
        assert directory is not None
        env.svc.sign_in.directory = LdapDirectory(replace(directory.config, urls=(ldap.url,)))
        _, resp = sign_in_form(env, CAROL.uid, CAROL.password)
        assert resp.status_code == 302
        # The local admin never depends on the directory.
        _, resp = sign_in_form(env, "admin", PASSWORDS["admin"])
        assert resp.status_code == 302
