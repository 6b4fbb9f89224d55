"""The web app in a real browser: Playwright driving Debian's Chromium against the real server
(a subprocess), the real CLI, a real agent, a real SMTP server, a webhook receiver on loopback
and the Telegram stand-in.

Every flow runs with JavaScript on and off, on a page that records dialogs and CSP violations
(none may happen): signing in through the mailed link and seeing a task the CLI sent; adding a
webhook channel, testing it (the receiver checks the signature) and seeing its last error; an
e-mail channel confirmed from its mailed link by someone not signed in; a Telegram chat linked
by the page's link, whose QR code (decoded by ``zbarimg``) is that link; a dead letter replayed;
a token made and revoked; the account exported, deleted and signed up afresh; a command sent
from a task's page run by the agent on the machine. Screenshots of every page at desktop and
phone size go to ``$CLAUDE_NOTIFY_ARTIFACTS/web`` (default: the test's temporary directory),
and no page scrolls sideways on a phone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cloud_kit import Mailbox, Receiver, mail_text, needed, wait_for
from relay_kit import AgentProc, Server, api, cli, email, user_env
from standins.telegram import TOKEN, TelegramStandIn
from tg_kit import HOOK, SECRET, update

from claude_notify.events import TaskEvent

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>{{7*7}}\u202eevil"
BOT = "claude_notify_test_bot"


@pytest.fixture(scope="module")
def bot() -> Iterator[TelegramStandIn]:
    standin = TelegramStandIn(per_chat_interval_s=0)
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path,
           module_smtp: Mailbox, bot: TelegramStandIn) -> Iterator[Server]:
    path = tmp_path_factory.mktemp("web-db") / "server.db"
    shutil.copy(sqlite_template, path)
    made = Server.make(f"sqlite:///{path}", module_smtp,
                       CLAUDE_NOTIFY_SERVER_MAX_ATTEMPTS="4",
                       CLAUDE_NOTIFY_SERVER_TELEGRAM_BOT_TOKEN=TOKEN,
                       CLAUDE_NOTIFY_SERVER_TELEGRAM_BOT_USERNAME=BOT,
                       CLAUDE_NOTIFY_SERVER_TELEGRAM_API_BASE=bot.base_url,
                       CLAUDE_NOTIFY_SERVER_TELEGRAM_WEBHOOK_SECRET=SECRET)
    made.start()
    yield made
    made.stop()


@pytest.fixture(params=[True, False], ids=["js", "no-js"])
def javascript(request: pytest.FixtureRequest) -> bool:
    """Every flow runs with JavaScript on and with it off."""
    return bool(request.param)


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    where = Path(os.environ.get("CLAUDE_NOTIFY_ARTIFACTS") or tmp_path) / "web"
    where.mkdir(parents=True, exist_ok=True)
    return where


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


class Browsing:
    """The test's browser contexts (closed after it) and their watched pages."""

    def __init__(self, browser: Any, server: Server, box: Mailbox, javascript: bool) -> None:
        self.browser, self.server, self.box, self.javascript = browser, server, box, javascript
        self.contexts: list[Any] = []
        self.watched: list[Watched] = []

    def open(self, viewport: dict[str, int] = DESKTOP) -> Any:
        context = self.browser.new_context(java_script_enabled=self.javascript,
                                           viewport=viewport)
        self.contexts.append(context)
        watched = Watched(context)
        self.watched.append(watched)
        return watched.page

    def signed_in(self, address: str, viewport: dict[str, int] = DESKTOP) -> Any:
        """A new browser signed in as ``address`` through the sign-in page and mailed link."""
        page = self.open(viewport)
        seen = sum(address in m.rcpt_tos for m in self.box.messages)
        page.goto(f"{self.server.url}/app/signin")
        page.fill("#email", address)
        page.click("text=E-mail me a link")
        page.wait_for_selector("text=Check your mail")
        page.goto(_mailed_link(self.box, address, seen, "/app/signin/confirm?token="))
        page.click("button:has-text('Sign in')")
        page.wait_for_url("**/app/tasks")
        return page

    def assert_clean(self) -> None:
        for w in self.watched:
            assert w.clean(), (w.dialogs, w.violations)

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def browsing(browser: Any, server: Server, module_smtp: Mailbox,
             javascript: bool) -> Iterator[Browsing]:
    made = Browsing(browser, server, module_smtp, javascript)
    yield made
    made.close()


def _reload_until(page: Any, url: str, check: Callable[[], bool], what: str) -> None:
    def look() -> bool:
        page.goto(url)
        return check()

    wait_for(look, timeout=30, what=what)


def _shown(page: Any, url: str, text: str) -> None:
    """Reload ``url`` until the page shows ``text``."""
    _reload_until(page, url, lambda: text in page.inner_text("main"), f"{url} to show {text!r}")


def _fact(page: Any, name: str) -> str:
    """A channel's or task's fact: the value after ``name`` in the page's list of them."""
    return str(page.locator(f"dl.facts dt:text-is('{name}') + dd").inner_text()).strip()


def _mailed_link(box: Mailbox, address: str, seen: int, path: str) -> str:
    """The ``path`` link in the newest mail to ``address`` (after ``seen`` of them)."""
    mails = wait_for(lambda: (m := _mails_to(box, address))[seen:] and m, timeout=30,
                     what=f"a mail to {address}")
    return next(w for w in mails[-1].split() if path in w)


def _post_event(server: Server, token: str, **fields: Any) -> str:
    key = fields.pop("task_id", uuid.uuid4().hex)
    body = TaskEvent.from_dict({"type": "finished", "source": "run", "task_id": key,
                                "machine_id": "laptop-7f3a", "status": "success",
                                "exit_code": 0, **fields}).to_dict()
    sent = api(server, token, "POST", "/v1/events", json=body)
    assert sent.status_code == 202, sent.text
    return key


def _verifies(secret: str, received: Any) -> bool:
    """The Standard Webhooks signature, checked here without the server's code."""
    h = received.headers
    signed = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + received.body
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return f"v1,{expected}" in h["webhook-signature"].split()


def _mails_to(box: Mailbox, address: str) -> list[str]:
    return [mail_text(m) for m in box.messages if address in m.rcpt_tos]


# -- signing in and a task from the CLI ------------------------------------------------------


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
    assert urlsplit(page.url).path == "/app/signin"
    page.fill("#email", address)
    page.click("text=E-mail me a link")
    page.wait_for_load_state()
    assert "Check your mail" in page.content(), page.content()

    page.goto(_mailed_link(module_smtp, address, 0, "/app/signin/confirm?token="))
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

    page.click("button:has-text('Sign out')")
    page.wait_for_selector("text=E-mail me a link")
    page.goto(f"{server.url}/app/tasks")
    assert urlsplit(page.url).path == "/app/signin"
    assert watched.clean(), (watched.dialogs, watched.violations)
    context.close()


# -- channels --------------------------------------------------------------------------------


def _add_channel(page: Any, server: Server, kind: str, target: str = "") -> str:
    """Add a channel from the channels page; its page's URL."""
    page.goto(f"{server.url}/app/channels")
    page.check(f"input[name=type][value={kind}]")
    if target:
        page.fill("#target", target)
    page.click("button:has-text('Add channel')")
    page.wait_for_url("**/app/channels/*-*")
    return str(page.url)


def test_a_webhook_channel_is_tested_signed_and_shows_its_last_error(
    browsing: Browsing, server: Server, receiver: Receiver,
) -> None:
    owner = email("channels")
    server.admin("create-user", owner, "--plan", "pro")
    page = browsing.signed_in(owner)

    hook = _add_channel(page, server, "webhook", receiver.url)
    assert page.inner_text("dl.facts").count(receiver.url) == 1
    page.click("button:has-text('Replace the signing secret')")
    secret = page.inner_text("section.secret pre.out").strip()
    assert secret.startswith("whsec_")
    page.click("button:has-text('Send a test')")
    page.wait_for_selector("text=A test message is on its way")
    [test] = receiver.wait(1, timeout=30)
    assert json.loads(test.body)["type"] == "notification.test"
    assert _verifies(secret, test), test.headers
    _reload_until(page, hook, lambda: _fact(page, "Last sent") != "never",
                  "the page to show the test as sent")
    assert _fact(page, "Last error") == "none"

    receiver.answer(500, 500, 500, 500)
    page.click("button:has-text('Send a test')")
    receiver.wait(5, timeout=30)
    _reload_until(page, hook, lambda: "gave up after 4 attempts: HTTP 500" in _fact(
        page, "Last error"), "the page to show the last error")
    page.goto(f"{server.url}/app/channels")
    assert "HTTP 500" in page.locator("table.channels tr", has_text="webhook").inner_text()
    browsing.assert_clean()


def test_an_email_channel_is_confirmed_from_its_mailed_link_by_someone_signed_out(
    browsing: Browsing, server: Server, module_smtp: Mailbox,
) -> None:
    page = browsing.signed_in(email("mailer"))
    address = f"alerts-{uuid.uuid4().hex[:8]}@example.com"
    mine = _add_channel(page, server, "email", address)
    assert "waiting for its recipient to confirm" in page.inner_text("main")
    recipient = browsing.open()  # not signed in: the recipient may be someone else
    recipient.goto(_mailed_link(module_smtp, address, 0, "/app/verify?token="))
    recipient.wait_for_selector(f"text=Send task notifications to {address}?")
    page.goto(mine)
    assert "waiting for its recipient to confirm" in page.inner_text("main")  # not yet
    recipient.click("button:has-text('Confirm')")
    recipient.wait_for_selector("h1:has-text('Confirmed')")
    page.goto(mine)
    assert _fact(page, "State") == "on", page.inner_text("dl.facts")
    page.goto(f"{server.url}/app/channels")
    row = page.locator("table.channels tr", has_text=address)
    assert row.locator(".status").inner_text() == "on"
    browsing.assert_clean()


def _qr_text(element: Any, where: Path) -> str:
    zbarimg = needed("zbarimg (zbar-tools)", "zbarimg")
    element.screenshot(path=where)
    decoded = subprocess.run([zbarimg, "--raw", "-q", str(where)], capture_output=True,
                             timeout=30, check=False)
    assert decoded.returncode == 0, decoded.stderr
    return decoded.stdout.decode().strip()


def test_a_telegram_chat_is_linked_by_the_pages_link_whose_qr_code_is_that_link(
    browsing: Browsing, server: Server, bot: TelegramStandIn, tmp_path: Path,
    javascript: bool,
) -> None:
    owner = email("telegram")
    server.admin("create-user", owner, "--plan", "pro")
    page = browsing.signed_in(owner, PHONE)
    channel = _add_channel(page, server, "telegram")
    assert "no chat linked yet" in page.inner_text("dl.facts")
    page.click("button:has-text('Link a chat')")
    href = page.get_attribute("a:has-text('Open in Telegram')", "href")
    assert href is not None and href.startswith(f"https://t.me/{BOT}?start=")
    assert _qr_text(page.locator("img.qr"), tmp_path / "qr.png") == href
    command = page.inner_text("div.link-code pre.out").strip()
    assert command == "/start " + href.split("start=")[1]

    chat = 4200 + int(javascript)  # the stand-in is shared: a chat per test
    linked = httpx.post(f"{server.url}/v1/telegram/webhook", headers=HOOK, timeout=10,
                        json=update(command, chat=chat))
    assert linked.status_code == 200, linked.text
    wait_for(lambda: bot.sent_to(chat), timeout=30, what="the bot to say the chat is linked")
    page.goto(channel)
    assert "Linked: ops" in page.inner_text("main")
    assert _fact(page, "State") == "on"
    browsing.assert_clean()


# -- deliveries ------------------------------------------------------------------------------


def test_a_dead_letter_is_replayed_from_the_deliveries_page(
    browsing: Browsing, server: Server, receiver: Receiver,
) -> None:
    owner = email("replay")
    token = server.admin("create-user", owner, "--plan", "pro")
    made = api(server, token, "POST", "/v1/channels", json={
        "type": "webhook", "config": {"url": receiver.url}, "rules": {"on": ["finished"]}})
    assert made.status_code == 201, made.text
    receiver.answer(500, 500, 500, 500)
    _post_event(server, token, command="make deploy", status="failure", exit_code=2)
    receiver.wait(4, timeout=30)

    page = browsing.signed_in(owner)
    dead = f"{server.url}/app/deliveries?status=dead"
    _shown(page, dead, "gave up after 4 attempts: HTTP 500")
    row = page.locator("table.deliveries tbody tr", has_text="webhook")  # not sign-in mail
    assert row.count() == 1 and "dead" in row.locator(".status").inner_text()
    row.locator("button:has-text('Replay')").click()
    page.wait_for_url("**/app/deliveries")
    [*_, replayed] = receiver.wait(5, timeout=30)
    assert json.loads(replayed.body)["data"]["command"] == "make deploy"
    _reload_until(page, f"{server.url}/app/deliveries",
                  lambda: row.locator(".status").inner_text() == "sent",
                  "the page to show the replayed delivery as sent")
    assert row.count() == 1 and row.locator("button:has-text('Replay')").count() == 0
    browsing.assert_clean()


# -- tokens and the account ------------------------------------------------------------------


def test_a_token_is_made_and_revoked_and_the_account_exported_deleted_and_made_anew(
    browsing: Browsing, server: Server, tmp_path: Path,
) -> None:
    address = email("account")
    page = browsing.signed_in(address)  # sign-up is open: the first sign-in makes the account
    page.goto(f"{server.url}/app/access")
    page.fill("#token-name", "ci box")
    page.check("input[name=scope][value='tasks:read']")
    page.click("button:has-text('Create token')")
    secret = page.inner_text("section.secret pre.out").strip()
    assert secret.startswith("cnt_")
    _post_event(server, secret, command="make from-the-token")
    assert api(server, secret, "GET", "/v1/tasks").status_code == 200
    page.goto(f"{server.url}/app/access")
    assert secret not in page.content()  # shown once
    page.locator("tr", has_text="ci box").locator("button:has-text('Revoke')").click()
    page.wait_for_url("**/app/access")
    assert page.locator("tr", has_text="ci box").count() == 0
    assert api(server, secret, "GET", "/v1/tasks").status_code == 401

    page.goto(f"{server.url}/app/account")
    with page.expect_download() as got:
        page.click("text=Export everything as JSON")
    saved = tmp_path / "export.json"
    got.value.save_as(saved)
    data = json.loads(saved.read_text())
    assert data["account"]["email"] == address
    assert [t["command"] for t in data["tasks"]] == ["make from-the-token"]
    assert secret not in saved.read_text()

    page.fill("#confirm", address.upper())
    page.click("button:has-text('Delete the account')")
    page.wait_for_selector("h1:has-text('Account deleted')")
    page.goto(f"{server.url}/app/tasks")
    assert urlsplit(page.url).path == "/app/signin"

    again = browsing.signed_in(address)  # a new account, with nothing of the old one
    again.wait_for_selector("text=No tasks yet")
    again.goto(f"{server.url}/app/access")
    assert "ci box" not in again.inner_text("main")
    browsing.assert_clean()


# -- a command from the task page, run by the agent ------------------------------------------


MARK = "#!/bin/sh\necho \"$1\" >> marks.txt\n"


@dataclass(frozen=True)
class Machine:
    owner: str
    env: dict[str, str]
    project: Path


@pytest.fixture(scope="module")
def machine(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    """A pro user's machine: the CLI logged in, its agent registered, allowed ``./mark.sh *``
    in ``project`` and connected."""
    home = tmp_path_factory.mktemp("machine")
    owner = email("relay")
    token = server.admin("create-user", owner, "--plan", "pro")
    env = user_env(home / "user")
    cli(["login", "--server", server.url, "--token"], env, stdin=token.encode() + b"\n")
    project = home / "project"
    project.mkdir()
    (project / "mark.sh").write_text(MARK)
    (project / "mark.sh").chmod(0o755)
    cli(["agent", "--register"], env)
    cli(["agent", "--allow", "./mark.sh *", "--dir", str(project)], env)
    agent = AgentProc(env, project, home / "agent.log")
    agent.start()
    yield Machine(owner, env, project)
    agent.stop()


def _marks(project: Path) -> list[str]:
    path = project / "marks.txt"
    return path.read_text().split() if path.exists() else []


def test_a_command_sent_from_the_task_page_runs_on_the_machines_agent(
    browsing: Browsing, server: Server, machine: Machine, javascript: bool,
) -> None:
    marker = f"mark-{uuid.uuid4().hex[:8]}"
    session = f"tty:/dev/pts/{9 + int(javascript)}:{uuid.uuid4().int % 10_000}"
    cli(["run", "--exec", "--", "./mark.sh", marker],
        {**machine.env, "CLAUDE_NOTIFY_SESSION_ID": session}, cwd=machine.project)
    cli(["sync"], machine.env)
    assert _marks(machine.project).count(marker) == 1

    page = browsing.signed_in(machine.owner)
    page.goto(f"{server.url}/app/tasks")
    page.locator("table.tasks tbody tr", has_text=marker).locator("a").first.click()
    page.wait_for_selector("#relayed")
    assert str(machine.project) in page.inner_text("#relayed")
    if javascript:
        page.click("button:has-text('Run again')")
        sent, runs = f"./mark.sh {marker}", 2
    else:
        reply = f"{marker}-reply"
        page.fill("#command", f"./mark.sh {reply}")
        page.click("#relayed button:has-text('Send')")
        sent, runs, marker = f"./mark.sh {reply}", 1, reply
    page.wait_for_url("**#relayed")
    wait_for(lambda: _marks(machine.project).count(marker) == runs, timeout=60,
             what=f"the agent to run {sent!r}")
    task = page.url.split("#")[0]
    _shown(page, task, "done (0)")
    row = page.locator("#relayed tbody tr", has_text=sent)
    assert "web" in row.inner_text() and "done (0)" in row.inner_text()
    browsing.assert_clean()


# -- every page at desktop and phone size ----------------------------------------------------


PASSED = "".join(f"tests/test_{m}.py ........ [{m * 12}%]\n" for m in range(1, 9)) + (
    "96 passed in 41.27s\n")
FAILED = "Error: connect ECONNREFUSED 10.0.0.7:5432\n    at TCPConnectWrap.afterConnect\n"
TOO_WIDE = """() => [...new Set([...document.querySelectorAll("main *")]
  .filter(e => e.getBoundingClientRect().right > innerWidth)
  .map(e => e.closest("table, pre, form, dl, section, figure") || e)
  .map(e => `${e.tagName.toLowerCase()}${e.className ? "." + e.className : ""} `
            + `(${Math.round(e.scrollWidth)}px)`))]"""
"""What sticks out past the right edge of a page, for the failure message."""


def test_every_page_fits_a_phone_and_is_screenshot_at_both_sizes(
    browsing: Browsing, server: Server, receiver: Receiver, bot: TelegramStandIn,
    artifacts: Path,
    javascript: bool,
) -> None:
    owner = email("ada")
    token = server.admin("create-user", owner, "--plan", "pro")
    made = api(server, token, "POST", "/v1/channels", json={
        "type": "webhook", "name": "build bot", "rules": {"on": ["finished"]},
        "config": {"url": receiver.url}})
    assert made.status_code == 201, made.text
    telegram = api(server, token, "POST", "/v1/channels", json={
        "type": "telegram", "name": "phone", "config": {}, "rules": {"on": ["failure"]}})
    assert telegram.status_code == 201, telegram.text
    code = api(server, token, "POST", f"/v1/channels/{telegram.json()['id']}/link").json()
    chat = 4300 + int(javascript)
    assert httpx.post(f"{server.url}/v1/telegram/webhook", headers=HOOK, timeout=10,
                      json=update(code["command"], chat=chat)).status_code == 200
    wait_for(lambda: bot.sent_to(chat), timeout=30, what="the bot to say the chat is linked")

    receiver.answer(500, 500, 500, 500)  # the first task's webhook call becomes a dead letter
    runs = [("npm run deploy -- --prod", "failure", 1, 95), ("pytest -q tests/", "success", 0, 41),
            ("cargo build --release", "success", 0, 188), ("make lint", "failure", 2, 7),
            ("./train.sh --epochs 20", "success", 0, 2710)]
    keys = []
    for n, (command, status, code_, took) in enumerate(runs):
        ended = datetime.now(UTC) - timedelta(minutes=7 * (len(runs) - n))
        keys.append(_post_event(
            server, token, command=command, status=status, exit_code=code_,
            started_at=(ended - timedelta(seconds=took)).isoformat(), ended_at=ended.isoformat(),
            session_id="tty:/dev/pts/3:4242", cwd="/home/ada/src/app", host="ada-laptop",
            tail=PASSED if status == "success" else FAILED))
        if n == 0:
            receiver.wait(4, timeout=30)
    receiver.wait(8, timeout=30)
    shown = keys[1]

    stranger, page = browsing.open(), browsing.signed_in(owner)
    urls: dict[str, Callable[[], None]] = {
        "signin": lambda: stranger.goto(f"{server.url}/app/signin"),
        "tasks": lambda: page.goto(f"{server.url}/app/tasks"),
        "task": lambda: page.goto(f"{server.url}/app/t/{shown}"),
        "channels": lambda: page.goto(f"{server.url}/app/channels"),
        "channel-qr": lambda: (page.goto(f"{server.url}/app/channels/{telegram.json()['id']}"),
                               page.click("button:has-text('Link a chat')")),
        "deliveries": lambda: page.goto(f"{server.url}/app/deliveries"),
        "tokens": lambda: page.goto(f"{server.url}/app/access"),
        "account": lambda: page.goto(f"{server.url}/app/account"),
    }
    wide: list[str] = []
    for name, go in urls.items():
        shot = stranger if name == "signin" else page
        shot.set_viewport_size(DESKTOP)
        go()
        if javascript:
            shot.screenshot(path=artifacts / f"{name}-desktop.png", full_page=True)
        shot.set_viewport_size(PHONE)
        if shot.evaluate("document.documentElement.scrollWidth") > PHONE["width"]:
            wide.append(f"{name}: {shot.evaluate(TOO_WIDE)}")
        if javascript:
            shot.screenshot(path=artifacts / f"{name}-phone.png", full_page=True)
    assert wide == [], f"these pages scroll sideways on a phone: {wide}"
    browsing.assert_clean()


# -- keyboard and the reply link --------------------------------------------------------------


def test_the_pages_work_from_the_keyboard_alone(browsing: Browsing) -> None:
    """Tab reaches the navigation with a visible focus ring, Enter follows it, and a form is
    filled and sent without the mouse."""
    address = email("keys")
    browsing.server.admin("create-user", address)
    page = browsing.signed_in(address)
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Channels":
            break
    else:
        raise AssertionError("Tab never reached the Channels link")
    ring = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert ring == "solid"
    page.keyboard.press("Enter")
    page.wait_for_url("**/app/channels")
    page.focus("#target")
    page.keyboard.type(address)
    page.keyboard.press("Enter")  # sends the add form
    page.wait_for_selector("text=waiting for its recipient to confirm")
    browsing.assert_clean()


def test_a_reply_token_in_the_links_fragment_shows_the_reply_form_and_leaves_the_address_bar(
    browsing: Browsing,
) -> None:
    page = browsing.open(PHONE)
    page.goto(f"{browsing.server.url}/app/t/some-task#reply=cnr_abc.def")
    assert urlsplit(page.url).path == "/app/signin"
    form = page.locator("#reply")
    if browsing.javascript:
        form.wait_for(state="visible")
        assert page.input_value("#reply-token") == "cnr_abc.def"
        assert "cnr_" not in page.url  # taken out of the address bar and the history
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    else:  # the fragment is the browser's alone: without JavaScript, no form
        assert form.is_hidden()
    page.goto(f"{browsing.server.url}/app/t/some-task#other=1")
    assert page.locator("#reply").is_hidden()
    browsing.assert_clean()


def test_the_template_editor_previews_as_you_type_and_saves(
    browsing: Browsing, server: Server,
) -> None:
    owner = email("templates")
    server.admin("create-user", owner, "--plan", "pro")
    page = browsing.signed_in(owner)
    url = _add_channel(page, server, "email", owner)
    page.fill("#source", "{{ status }} <i>{{ command }}</i>")
    if browsing.javascript:  # the previews follow the typing, nothing pressed
        page.wait_for_selector("#previews h4:has-text('telegram')")
    else:
        page.click("form.template button[value=preview]")
        page.wait_for_selector("#previews h4:has-text('telegram')")
    shown = page.inner_text("#previews")
    assert "<i>" in shown  # the sample's command inside the template's markup, as text
    assert page.locator("#previews i").count() == 0  # markup in a preview is text
    page.fill("#source", "{{ nope }")
    if browsing.javascript:
        page.wait_for_selector("#previews .problem")
    else:
        page.click("form.template button[value=preview]")
        page.wait_for_selector(".problem")
    page.fill("#source", "Done: {{ command }}")
    page.click("form.template button[value=save]")
    page.wait_for_selector("text=Template saved")
    page.goto(url)
    assert page.input_value("#source") == "Done: {{ command }}"
    browsing.assert_clean()
