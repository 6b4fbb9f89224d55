"""An e-mailed permission request answered in Debian's Chromium (Playwright), against the real
app served by uvicorn (SQLite and PostgreSQL), the real SMTP server and an agent's real
WebSocket.

What runs for real: the mail as aiosmtpd received it; its link opened in a browser that is not
signed in; the page's shipped script (``approve.js``, under the app's Content-Security-Policy)
taking the key from the fragment, dropping it from the address bar, showing the request as text
and posting Allow with the key; the agent's tunnel handed the decision; the server's access log.
No CSP violation and no dialog (the command holds a ``<script>``) may happen, and the key may
appear in no request's URL or ``Referer`` and in no log line."""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from cloud_kit import Account, Mailbox, free_port, mail_text, verification_code, wait_for
from test_approvals import ask

from claude_notify.cloud.server.app import create_app
from claude_notify.cloud.server.logsetup import JsonFormatter
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings

HOSTILE = "echo \"</pre><script>alert('x')</script>\" && <b>rm</b> -rf 'build' & done"


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def settings(settings: Settings, port: int) -> Settings:
    """The web app's own address, so the mailed link leads back to this server."""
    return settings.replace(public_url=f"http://127.0.0.1:{port}",
                            app_url=f"http://127.0.0.1:{port}/app")


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """Every log line the server writes meanwhile, as JSON, the access log's included."""
    lines: list[str] = []
    formatter = JsonFormatter()

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(formatter.format(record))

    handler, root, access = Keep(), logging.getLogger(), logging.getLogger(
        "claude_notify.server.access")
    level = access.level
    root.addHandler(handler)
    access.setLevel(logging.INFO)
    yield lines
    root.removeHandler(handler)
    access.setLevel(level)


@pytest.fixture
def served(runtime: Runtime, port: int, logged: list[str]) -> Iterator[str]:
    """The app under uvicorn, as ``claude-notify server`` runs it (no uvicorn access log)."""
    config = uvicorn.Config(create_app(runtime=runtime), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="uvicorn to start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)


class Tunnel:
    """An agent's WebSocket, speaking JSON as ``claude-notify agent`` does."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def send_json(self, message: dict[str, Any]) -> None:
        self.conn.send(json.dumps(message))

    def receive_json(self) -> Any:
        return json.loads(self.conn.recv(timeout=30))


def _own_address_confirmed(url: str, user: Account, box: Mailbox) -> None:
    before = box.count()
    made = httpx.post(f"{url}/v1/channels", headers=user.headers,
                      json={"type": "email", "config": {"address": user.email}})
    assert made.status_code == 201, made.text
    code = verification_code(box.wait(before + 1)[before])
    assert httpx.post(f"{url}/v1/channels/{made.json()['id']}/verify", headers=user.headers,
                      json={"code": code}).status_code == 200


def _owner_with_agent(served: str, box: Mailbox, make_user: Callable[..., Account]
                      ) -> tuple[Account, str]:
    """A pro user whose own address is confirmed, and an agent token of theirs."""
    user = make_user(plan="pro")
    _own_address_confirmed(served, user, box)
    token = httpx.post(f"{served}/v1/agents", headers=user.headers,
                       json={"machine_id": "laptop-7f3a"}).json()["token"]
    return user, token


def _watched_page(browser: Any) -> tuple[Any, Any, list[str]]:
    """A fresh context's page, with every dialog and CSP violation it meets collected."""
    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []
    page.on("dialog", lambda d: (problems.append(d.message), d.dismiss()))
    page.on("console", lambda m: problems.append(m.text)
            if "Content Security Policy" in m.text else None)
    return context, page, problems


def test_the_mailed_link_answers_in_a_browser_and_its_key_stays_out_of_urls_and_logs(
    browser: Any, served: str, smtp_server: Mailbox, make_user: Callable[..., Account],
    logged: list[str],
) -> None:
    from websockets.sync.client import connect

    user, token = _owner_with_agent(served, smtp_server, make_user)
    context, page, problems = _watched_page(browser)
    requests: list[tuple[str, str]] = []
    page.on("request", lambda r: requests.append((r.url, r.headers.get("referer", ""))))
    with connect(served.replace("http", "ws", 1) + "/v1/agent",
                 additional_headers={"Authorization": f"Bearer {token}"}) as conn:
        ws = Tunnel(conn)
        ws.send_json({"type": "hello", "sessions": [], "running": []})
        seen = smtp_server.count()
        asked = ask(ws, HOSTILE)
        mail = next(m for m in smtp_server.wait(seen + 1, timeout=30)[seen:]
                    if user.email in m.rcpt_tos)
        link = re.search(r"http://\S+/link#t=cna_[A-Za-z0-9_-]+", mail_text(mail))
        assert link, mail_text(mail)
        key = link.group(0).split("#t=")[1]
        try:
            page.goto(link.group(0))
            page.wait_for_selector("#ap-form:not([hidden])")
            assert page.locator("#ap-display").text_content() == HOSTILE  # as text, inert
            assert page.locator("#ap-title").text_content() == "Claude wants to use Bash"
            assert page.locator("#ap-where").text_content() == "project · laptop-7f3a"
            assert "#" not in page.url and page.url.endswith(f"/approvals/{asked['id']}/link")
            page.click("button[data-answer=allow]")
            page.wait_for_selector("#ap-outcome:not([hidden])")
            assert page.locator("#ap-said").text_content() == "Allowed"
            got = ws.receive_json()
            assert (got["id"], got["state"], got["digest"], got["by"]) == (
                asked["id"], "allowed", asked["digest"], "an e-mail link")

            # The same link opened again: the outcome, no buttons; its key answers no more.
            again = context.new_page()
            again.goto(link.group(0))
            again.wait_for_selector("#ap-outcome:not([hidden])")
            assert again.locator("#ap-said").text_content() == "Allowed"
            assert again.locator("#ap-form").is_hidden()
            replay = again.evaluate("""([path, key]) => fetch(path + '/answer', {method: 'POST',
                body: new URLSearchParams({token: key, answer: 'deny'})})
                .then(r => r.json().then(b => [r.status, b.problem]))""",
                                    [f"/app/approvals/{asked['id']}/link", key])
            assert replay == [409, "Already answered."]
            conn.send(json.dumps({"type": "ping"}))
            assert ws.receive_json() == {"type": "pong"}  # no second decision
        finally:
            context.close()
    assert problems == []
    assert requests and all(key not in url and key not in referer
                            for url, referer in requests)
    paths = [(line["method"], line["path"], line["status"]) for line in map(json.loads, logged)
             if line["logger"] == "claude_notify.server.access"]
    base = f"/app/approvals/{asked['id']}/link"
    for expected in (("GET", base, 200), ("POST", f"{base}/card", 200),
                     ("POST", f"{base}/answer", 200), ("POST", f"{base}/answer", 409)):
        assert expected in paths
    assert not [line for line in logged if key in line or key[4:20] in line]


def test_a_link_without_its_key_shows_no_request(
    browser: Any, served: str,
) -> None:
    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text)
            if "Content Security Policy" in m.text else None)
    try:
        page.goto(f"{served}/app/approvals/{uuid.uuid4()}/link#t=cna_{'x' * 43}")
        page.wait_for_selector("#ap-problem:not([hidden])")
        assert page.locator("#ap-problem").text_content() == (
            "This link is not valid: open it from its e-mail again.")
        assert page.locator("#ap-form").is_hidden() and page.locator("#ap-display").is_hidden()
        page.goto(f"{served}/app/approvals/{uuid.uuid4()}/link")
        page.wait_for_selector("#ap-problem:not([hidden])")
        assert "has no key" in str(page.locator("#ap-problem").text_content())
    finally:
        context.close()
    assert problems == []


def test_a_question_from_the_mailed_link_is_answered_by_its_options(
    browser: Any, served: str, smtp_server: Mailbox, make_user: Callable[..., Account],
) -> None:
    """approve.js draws the questions' options as inputs (their labels as text) and posts the
    options chosen by number; a wrong choice is refused and can be made again."""
    from test_approval_kinds import COLOR, TOPPINGS, file
    from websockets.sync.client import connect

    user, token = _owner_with_agent(served, smtp_server, make_user)
    context, page, problems = _watched_page(browser)
    with connect(served.replace("http", "ws", 1) + "/v1/agent",
                 additional_headers={"Authorization": f"Bearer {token}"}) as conn:
        ws = Tunnel(conn)
        ws.send_json({"type": "hello", "sessions": [], "running": []})
        seen = smtp_server.count()
        asked = file(ws, "AskUserQuestion", "1. Which color?\n2. Which toppings?",
                     questions=[COLOR, TOPPINGS])
        mail = next(m for m in smtp_server.wait(seen + 1, timeout=30)[seen:]
                    if user.email in m.rcpt_tos)
        link = re.search(r"http://\S+/link#t=cna_[A-Za-z0-9_-]+", mail_text(mail))
        assert link, mail_text(mail)
        try:
            page.goto(link.group(0))
            page.wait_for_selector("#ap-form:not([hidden])")
            assert page.locator("#ap-title").text_content() == "Claude asks you 2 questions"
            assert page.locator("#ap-allow").is_hidden() and page.locator("#ap-session").is_hidden()
            labels = page.locator("#ap-questions label").all_text_contents()
            assert [x.strip() for x in labels] == ["Red", "Blue <i>", "Ham", "Egg, fried", "Kale"]
            assert page.locator("#ap-questions i").count() == 0  # a label is text, not markup
            page.check("input[value='0:1']")
            page.click("#ap-answer")  # the toppings unanswered: refused, nothing spent
            page.wait_for_selector("#ap-problem:not([hidden])")
            assert "Choose one option for each question" in str(
                page.locator("#ap-problem").text_content())
            page.check("input[value='1:0']")
            page.check("input[value='1:2']")
            page.click("#ap-answer")
            page.wait_for_selector("#ap-outcome:not([hidden])")
            assert page.locator("#ap-said").text_content() == "Answered: Blue <i>; Ham, Kale"
            got = ws.receive_json()
            assert (got["id"], got["state"], got["answers"], got["by"]) == (
                asked["id"], "allowed", [[1], [0, 2]], "an e-mail link")
        finally:
            context.close()
    assert problems == []
