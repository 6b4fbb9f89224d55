"""Signing in with GitHub in a real browser: Playwright driving Debian's Chromium against the real
server (a subprocess) and the GitHub stand-in (``github_standin``), JavaScript on and off.

The browser follows the real redirects, carries the real cookies (the flow's ``HttpOnly`` one
included) and lands signed in; what the stand-in recorded shows the server kept to GitHub's
contract. A refused sign-in (an unverified address) leaves the browser on a page that says why.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cloud_kit import Mailbox
from github_standin import GitHubStandIn, Person, address, running
from relay_kit import Server, email


@pytest.fixture(scope="module")
def github() -> Iterator[GitHubStandIn]:
    with running() as standin:
        yield standin
        assert standin.violations == []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path,
           module_smtp: Mailbox, github: GitHubStandIn) -> Iterator[Server]:
    path = tmp_path_factory.mktemp("web-github-db") / "server.db"
    shutil.copy(sqlite_template, path)
    made = Server.make(f"sqlite:///{path}", module_smtp,
                       CLAUDE_NOTIFY_SERVER_GITHUB_CLIENT_ID=github.client_id,
                       CLAUDE_NOTIFY_SERVER_GITHUB_CLIENT_SECRET=github.client_secret,
                       CLAUDE_NOTIFY_SERVER_GITHUB_URL=github.url,
                       CLAUDE_NOTIFY_SERVER_GITHUB_API_URL=github.url)
    made.start()
    yield made
    made.stop()


def _context(browser: Any, javascript: bool) -> tuple[Any, Any, list[str]]:
    """A fresh browser profile and page; the list collects CSP violations (none may happen)."""
    context = browser.new_context(java_script_enabled=javascript)
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text)
            if "Content Security Policy" in m.text else None)
    return context, page, violations


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_sign_in_with_github_lands_signed_in_on_the_tasks_page(
    browser: Any, server: Server, github: GitHubStandIn, javascript: bool
) -> None:
    who = email("gh")
    github.person = Person(id=secrets.randbelow(10**9), email=None, emails=[address(who)])
    context, page, violations = _context(browser, javascript)
    page.goto(f"{server.url}/app")
    assert page.url.endswith("/app/signin")
    page.click("text=Sign in with GitHub")
    page.wait_for_url(f"{server.url}/app/tasks")
    page.wait_for_selector("text=No tasks yet")
    assert page.inner_text("a.who") == who
    cookies = {c["name"]: c for c in context.cookies()}
    assert "claude_notify_github" not in cookies  # the flow's cookie went with the flow
    assert cookies["claude_notify_session"]["httpOnly"]
    assert github.authorized[-1]["redirect_uri"] == f"{server.url}/app/signin/github/callback"

    page.click("button:has-text('Sign out')")
    page.wait_for_selector("text=Sign in with GitHub")
    page.click("text=Sign in with GitHub")  # again: the same GitHub account, the same user
    page.wait_for_url(f"{server.url}/app/tasks")
    assert page.inner_text("a.who") == who
    assert violations == []
    context.close()


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_an_unverified_address_is_refused_with_a_page_that_says_why(
    browser: Any, server: Server, github: GitHubStandIn, javascript: bool
) -> None:
    github.person = Person(id=777_000 + javascript, emails=[address(email("gh"), verified=False)])
    context, page, violations = _context(browser, javascript)
    page.goto(f"{server.url}/app/signin")
    page.click("text=Sign in with GitHub")
    page.wait_for_selector("text=no verified primary e-mail address")
    assert "/app/signin/github/callback" in page.url
    page.goto(f"{server.url}/app/tasks")
    assert page.url.endswith("/app/signin")  # nobody signed in
    assert violations == []
    context.close()
