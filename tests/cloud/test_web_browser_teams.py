"""The invite flow end to end in a real browser (Playwright driving Debian's Chromium) against
the real server (a subprocess) and a real SMTP server (aiosmtpd), with JavaScript on and off:

the owner of a Pro workspace signs in through the mailed link, opens /app/workspace and invites
an address with the page's form; the invite mail arrives; a second browser (another person, not
signed in) opens its link, sees the confirm page (which joins nobody), presses Join and lands
signed in on the team's tasks (a task the owner's machine reported is there); the owner's page
then lists the new member, whose role the owner changes and whom they then remove with the
page's forms, after which the removed person's browser no longer sees the team's tasks.
No page raises a dialog or a CSP violation.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloud_kit import Mailbox, mail_text, wait_for
from relay_kit import Server, email

from claude_notify.events import TaskEvent


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path,
           module_smtp: Mailbox) -> Iterator[Server]:
    path = tmp_path_factory.mktemp("teams-web-db") / "server.db"
    shutil.copy(sqlite_template, path)
    made = Server.make(f"sqlite:///{path}", module_smtp)
    made.start()
    yield made
    made.stop()


@pytest.fixture(params=[True, False], ids=["js", "no-js"])
def javascript(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


class Watched:
    """A browser context's page whose dialogs and CSP violations are recorded."""

    def __init__(self, browser: Any, javascript: bool) -> None:
        self.context = browser.new_context(java_script_enabled=javascript)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("dialog", lambda d: (self.problems.append(d.message), d.dismiss()))
        self.page.on("console", lambda m: self.problems.append(m.text)
                     if "Content Security Policy" in m.text else None)


@pytest.fixture
def people(browser: Any, javascript: bool) -> Iterator[list[Watched]]:
    made = [Watched(browser, javascript) for _ in range(2)]
    yield made
    for w in made:
        w.context.close()


def _mails_to(box: Mailbox, address: str) -> list[str]:
    return [mail_text(m) for m in box.messages if address in m.rcpt_tos]


def _mailed_link(box: Mailbox, address: str, seen: int, path: str) -> str:
    mails = wait_for(lambda: (m := _mails_to(box, address))[seen:] and m, timeout=30,
                     what=f"a mail to {address}")
    return next(w for w in mails[-1].split() if path in w)


def _sign_in(page: Any, server: Server, box: Mailbox, address: str) -> None:
    seen = len(_mails_to(box, address))
    page.goto(f"{server.url}/app/signin")
    page.fill("#email", address)
    page.click("text=E-mail me a link")
    page.wait_for_selector("text=Check your mail")
    page.goto(_mailed_link(box, address, seen, "/app/signin/confirm?token="))
    page.click("button:has-text('Sign in')")
    page.wait_for_url("**/app/tasks")


def _report(server: Server, token: str, cmd: str) -> None:
    """A finished task from the owner's machine (its account token acts in the workspace)."""
    body = TaskEvent.from_dict({"type": "finished", "source": "run", "task_id": uuid.uuid4().hex,
                                "machine_id": "owner-laptop", "status": "success",
                                "exit_code": 0, "command": cmd}).to_dict()
    sent = httpx.post(f"{server.url}/v1/events", json=body, timeout=10,
                      headers={"Authorization": f"Bearer {token}"})
    assert sent.status_code == 202, sent.text


def _members(server: Server, token: str) -> dict[str, str]:
    got = httpx.get(f"{server.url}/v1/workspace/members", timeout=10,
                    headers={"Authorization": f"Bearer {token}"})
    assert got.status_code == 200, got.text
    return {m["email"]: m["role"] for m in got.json()}


def test_invite_join_change_role_and_remove(server: Server, module_smtp: Mailbox,
                                            people: list[Watched]) -> None:
    owner, newcomer = email("owner"), email("newcomer")
    owner_token = server.admin("create-user", owner, "--plan", "pro")
    cmd = f"make deploy-{uuid.uuid4().hex[:6]}"
    _report(server, owner_token, cmd)
    mine, theirs = people[0].page, people[1].page

    # The owner invites from the workspace page.
    _sign_in(mine, server, module_smtp, owner)
    mine.goto(f"{server.url}/app/workspace")
    assert mine.inner_text("h1") == owner
    seen = len(_mails_to(module_smtp, newcomer))
    form = mine.locator("form[action='/app/workspace/invites']")
    form.locator("input[name=email]").fill(newcomer)
    form.locator("select[name=role]").select_option("member")
    form.locator("button:has-text('Invite')").click()
    mine.wait_for_selector(f"text=Invited {newcomer}: the link is mailed to them.")
    assert newcomer in mine.locator("#invites").inner_text()

    # The mail arrives; the newcomer (no account yet, not signed in) opens its link.
    link = _mailed_link(module_smtp, newcomer, seen, "/app/invite?token=")
    mail = _mails_to(module_smtp, newcomer)[-1]
    assert owner in mail and "press Join" in mail
    theirs.goto(link)
    assert theirs.inner_text("h1") == f"Join {owner}?"
    assert newcomer in theirs.inner_text("main") and "member" in theirs.inner_text("main")
    assert newcomer not in _members(server, owner_token)  # opening the link joined nobody
    theirs.click("button:has-text('Join')")
    theirs.wait_for_url("**/app/tasks")
    assert cmd in theirs.inner_text("main")  # signed in, looking at the team's tasks
    theirs.goto(f"{server.url}/app/workspace")
    assert theirs.inner_text("h1") == owner and "you are member" in theirs.inner_text("main")
    theirs.goto(link)  # the link worked once
    assert "Join" not in theirs.inner_text("h1")

    # The owner's page lists them; the owner makes them a viewer, then removes them.
    mine.goto(f"{server.url}/app/workspace")
    row = mine.locator("#members tbody tr", has_text=newcomer)
    assert row.count() == 1
    row.locator(f"select[aria-label='Role of {newcomer}']").select_option("viewer")
    row.locator("button:has-text('Set')").click()
    wait_for(lambda: _members(server, owner_token).get(newcomer) == "viewer",
             what="the role change")
    mine.goto(f"{server.url}/app/workspace")
    row = mine.locator("#members tbody tr", has_text=newcomer)
    assert row.locator("select[name=role]").input_value() == "viewer"
    theirs.goto(f"{server.url}/app/workspace")
    assert "you are viewer" in theirs.inner_text("main")

    row.locator("button:has-text('Remove')").click()
    mine.wait_for_url("**/app/workspace")
    wait_for(lambda: newcomer not in _members(server, owner_token), what="the removal")
    mine.goto(f"{server.url}/app/workspace")
    assert mine.locator("#members tbody tr", has_text=newcomer).count() == 0
    assert "1 of 5 seats" in mine.inner_text("main")

    # The removed person's browser is back in their own workspace: the team's task is gone.
    theirs.goto(f"{server.url}/app/tasks")
    assert cmd not in theirs.inner_text("main")
    theirs.goto(f"{server.url}/app/workspace")
    assert theirs.inner_text("h1") == newcomer

    activity = httpx.get(f"{server.url}/v1/workspace/activity", timeout=10,
                         headers={"Authorization": f"Bearer {owner_token}"}).json()
    assert [a["action"] for a in reversed(activity)] == [
        "member.invited", "member.joined", "member.role_changed", "member.removed"]
    for w in people:
        assert not w.problems, w.problems
