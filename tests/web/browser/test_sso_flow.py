"""Single sign-on in headless Chromium against a real OpenID provider: "Sign in with" on the
sign-in page, the provider's own login form, back in the portal under the provider's name
for the person; "Sign out" ends docqa's session and, through the provider's logout page,
the provider's, and lands on docqa's sign-in page again. (A form post that the provider's
logout ends must pass the pages' CSP form-action, which only a real browser checks.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.oidc_server import OidcServer
from tests.web.browser.conftest import Shots
from tests.web.live import LiveServer, copy_data_dir

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def sso_server(
    tmp_path_factory: pytest.TempPathFactory, seeded_template: Path
) -> Iterator[tuple[LiveServer, OidcServer]]:
    root = tmp_path_factory.mktemp("live-sso")
    server = LiveServer(copy_data_dir(seeded_template, root / "var"), name="sso")
    provider = OidcServer(
        root / "provider", f"{server.url}/login/oidc/callback", f"{server.url}/login"
    ).start()
    try:
        server.extra_env.update(
            {f"DOCQA_{key.upper()}": str(value) for key, value in provider.settings().items()}
        )
        with server:
            yield server, provider
    finally:
        provider.stop()


def test_sign_in_and_out_through_the_provider(
    page: Any, context: Any, sso_server: tuple[LiveServer, OidcServer], shots: Shots
) -> None:
    server, provider = sso_server
    page.goto(server.url + "/login")
    assert page.inner_text("#sign-in-oidc") == "Sign in with Example SSO"
    shots(page, "sign-in-page", full_page=False)

    page.click("#sign-in-oidc")
    page.wait_for_url(re.compile(re.escape(provider.issuer) + r"/interaction/.*"))
    page.fill("#login", "olivia")
    page.fill("#password", "Olivia-pass-1")
    page.click("#submit")
    page.wait_for_url(server.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    assert page.inner_text("#user-menu summary") == "Olivia Ortiz"
    shots(page, "signed-in-by-the-provider", full_page=False)

    page.click("#user-menu summary")
    page.click("#sign-out")
    page.wait_for_url(re.compile(re.escape(provider.issuer) + r"/session/end.*"))
    shots(page, "provider-logout", full_page=False)
    page.click("button[autofocus], button[name='logout']")  # "Yes, sign me out"
    page.wait_for_url(server.url + "/login")
    assert int(context.request.get(server.url + "/api/v1/me").status) == 401
    shots(page, "back-at-sign-in", full_page=False)

    # The provider's session ended too: the next "Sign in with" asks for the password again.
    page.click("#sign-in-oidc")
    page.wait_for_url(re.compile(re.escape(provider.issuer) + r"/interaction/.*"))
    assert page.is_visible("#password")
