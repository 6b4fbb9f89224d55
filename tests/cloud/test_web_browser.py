"""The web app in a real browser: Playwright driving Debian's Chromium against the real server
(a subprocess), the real CLI and a real SMTP server.

The flows run with JavaScript on and off: signing in through the mailed link, a task the CLI
sends appearing in the list and its page, hostile text never running (no dialog ever opens, no
CSP violation), signing out. Screenshots of the pages at desktop and phone size go to
``$CLAUDE_NOTIFY_ARTIFACTS`` (default: the test's temporary directory).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cloud_kit import Mailbox, mail_text, wait_for
from relay_kit import Server, cli, email, user_env

playwright_sync = pytest.importorskip("playwright.sync_api")

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>{{7*7}}\u202eevil"


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (scripts/test.sh installs it)")
        pytest.skip("chromium is not installed (scripts/test.sh installs it)")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    with playwright_sync.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path,
           module_smtp: Mailbox) -> Iterator[Server]:
    path = tmp_path_factory.mktemp("web-db") / "server.db"
    shutil.copy(sqlite_template, path)
    made = Server.make(f"sqlite:///{path}", module_smtp)
    made.start()
    yield made
    made.stop()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    where = Path(os.environ.get("CLAUDE_NOTIFY_ARTIFACTS") or tmp_path) / "web"
    where.mkdir(parents=True, exist_ok=True)
    return where


def _link(box: Mailbox, address: str) -> str:
    def mine() -> list[str]:
        return [mail_text(m) for m in box.messages if address in m.rcpt_tos]

    wait_for(lambda: bool(mine()), what=f"the sign-in mail to {address}")
    return next(w for w in mine()[-1].split() if "/app/signin/confirm?token=" in w)


class Watched:
    """A page whose dialogs and CSP violations are recorded: none may ever happen."""

    def __init__(self, context: Any) -> None:
        self.page = context.new_page()
        self.dialogs: list[str] = []
        self.violations: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("console", lambda m: self.violations.append(m.text)
                     if "Content Security Policy" in m.text else None)

    def clean(self) -> bool:
        return not self.dialogs and not self.violations


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_sign_in_see_a_task_from_the_cli_and_sign_out(
    browser: Any, server: Server, module_smtp: Mailbox, tmp_path: Path, artifacts: Path,
    javascript: bool,
) -> None:
    address = email("web")
    token = server.admin("create-user", address)  # its account token, for the CLI below
    context = browser.new_context(java_script_enabled=javascript, viewport=DESKTOP)
    watched = Watched(context)
    page = watched.page
    page.goto(f"{server.url}/app")
    assert page.url.endswith("/app/signin")
    page.fill("#email", address)
    page.click("text=E-mail me a link")
    page.wait_for_load_state()
    assert "Check your mail" in page.content(), page.content()

    link = _link(module_smtp, address)
    page.goto(link)
    page.wait_for_selector(f"text=Sign in as {address}?")
    page.click("button:has-text('Sign in')")
    page.wait_for_selector("text=No tasks yet")
    assert f"--email {address}" in page.inner_text("section.onboarding")
    if javascript:
        page.screenshot(path=artifacts / "tasks-empty.png")

    env = user_env(tmp_path / "user")
    cli(["login", "--server", server.url, "--token"], env, stdin=token.encode() + b"\n")
    cli(["run", "--exec", "--", "sh", "-c", f"echo '{HOSTILE}'; exit 3"], env, check=False)
    cli(["sync"], env)

    if not javascript:
        page.goto(f"{server.url}/app/tasks")  # without JavaScript, a reload shows it
    page.wait_for_selector("table.tasks .s-failure")  # with it, the open page does
    row = page.locator("table.tasks tbody tr").first
    assert "sh -c" in row.inner_text()
    row.locator("a").click()
    page.wait_for_selector("text=exit code 3")
    assert "<script>alert(1)</script>" in page.locator("pre.out").inner_text()
    if javascript:
        page.screenshot(path=artifacts / "task-desktop.png", full_page=True)
        page.set_viewport_size(PHONE)
        page.screenshot(path=artifacts / "task-phone.png", full_page=True)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], "the task page scrolls sideways on a phone"

    page.click("button:has-text('Sign out')")
    page.wait_for_selector("text=E-mail me a link")
    page.goto(f"{server.url}/app/tasks")
    assert page.url.endswith("/app/signin")
    assert watched.clean(), (watched.dialogs, watched.violations)
    context.close()
