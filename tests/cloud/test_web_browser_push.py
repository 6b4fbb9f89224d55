"""The web app as an installable app with push, in Debian's Chromium (Playwright) against the real
server (a subprocess) and the push-service stand-in.

What runs for real: the manifest and icons a phone installs the app from; the service worker
registered from every page at ``/app/sw.js`` and controlling ``/app/``; "Enable notifications"
(``push.js``) asking for permission and saving the subscription through the signed-in session;
the server encrypting and signing a task's push to the stand-in, which verifies and decrypts it;
that decrypted push handed to the registered worker by Chromium's DevTools protocol
(``ServiceWorker.deliverPushMessage``, what a push service's message turns into inside the
browser), the notification it shows (read back with ``getNotifications()``), and its "Run again"
action, whose click navigates the open app to the task's page, where the owner's own form sends
the command through the relay. No CSP violation and no dialog may happen anywhere.

A permission request pushed to the browser (Allow / Deny, kept on screen) is answered by the
worker's "Allow": it reads the approval's page with the browser's session and posts that page's
form with its token; the server records the answer and the worker says so in a notification.

What does not: Chromium's own subscription to its push service (offline here, so
``PushManager.subscribe`` is replaced in the page by one answering the stand-in's subscription;
the rest of ``push.js`` runs as shipped), the transport from a push service into the browser,
and a click by a person: the click is a ``notificationclick`` event dispatched inside the
worker, which runs the shipped handler but is not a user gesture (so ``focus()`` is refused and
a click with no window open, ``openWindow``, is not covered).
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cloud_kit import Mailbox, mail_text, wait_for
from relay_kit import Server, api
from standins.webpush import WebPushStandIn

from claude_notify.cloud.server.channels.vapid import b64url, new_private_key, public_key
from claude_notify.events import TaskEvent

KEY = new_private_key()
HOSTILE = "<img src=x onerror=alert(1)>&amp;{{7*7}}"


def _mailed_link(box: Mailbox, address: str, seen: int, path: str) -> str:
    """The ``path`` link in the newest mail to ``address`` (after ``seen`` of them)."""
    def mails() -> list[str]:
        return [mail_text(m) for m in box.messages if address in m.rcpt_tos]

    found = wait_for(lambda: mails()[seen:] and mails(), timeout=30, what=f"a mail to {address}")
    return next(w for w in found[-1].split() if path in w)


@pytest.fixture(scope="module")
def push() -> Iterator[WebPushStandIn]:
    standin = WebPushStandIn()
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path,
           module_smtp: Mailbox) -> Iterator[Server]:
    path = tmp_path_factory.mktemp("push-db") / "server.db"
    shutil.copy(sqlite_template, path)
    made = Server.make(f"sqlite:///{path}", module_smtp,
                       CLAUDE_NOTIFY_SERVER_VAPID_PRIVATE_KEY=KEY,
                       CLAUDE_NOTIFY_SERVER_VAPID_SUBJECT="mailto:ops@example.com")
    made.start()
    yield made
    made.stop()


def _fake_subscribe(endpoint: str, keys: dict[str, str]) -> str:
    """A page script standing in for Chromium's subscription to its push service (offline
    here): it answers the stand-in's subscription, made for the key the page asked with."""
    sub = json.dumps({"endpoint": endpoint, "keys": keys})
    return f"""
    (() => {{
      const made = {sub};
      let current = null;
      PushManager.prototype.getSubscription = function () {{ return Promise.resolve(current); }};
      PushManager.prototype.subscribe = function (options) {{
        current = {{
          endpoint: made.endpoint,
          options: {{applicationServerKey: options.applicationServerKey.buffer}},
          toJSON: () => made,
          unsubscribe: () => Promise.resolve(true),
        }};
        sessionStorage.setItem("askedKey",
          JSON.stringify(Array.from(new Uint8Array(options.applicationServerKey))));
        return Promise.resolve(current);
      }};
    }})();
    """


def _sign_in(page: Any, server: Server, box: Mailbox, address: str) -> None:
    seen = sum(address in m.rcpt_tos for m in box.messages)
    page.goto(f"{server.url}/app/signin")
    page.fill("#email", address)
    page.click("text=E-mail me a link")
    page.wait_for_selector("text=Check your mail")
    page.goto(_mailed_link(box, address, seen, "/app/signin/confirm?token="))
    page.click("button:has-text('Sign in')")
    page.wait_for_url("**/app/tasks")


def _notifications(page: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page.evaluate("""() => navigator.serviceWorker.ready
        .then(r => r.getNotifications())
        .then(ns => ns.map(n => ({title: n.title, body: n.body, tag: n.tag, data: n.data,
                                  actions: n.actions.map(a => a.action)})))""")
    return found


def _delivered(cdp: Any, page: Any, origin: str, registration: str, raw: bytes,
               what: str) -> list[dict[str, Any]]:
    """Hand ``raw`` to the worker as a push message until it shows a notification. Chromium may
    drop a message handed over while it is still starting the worker (seen twice in about a dozen
    runs on a loaded machine); the worker's tag makes a second delivery replace the first."""
    for _ in range(3):
        cdp.send("ServiceWorker.deliverPushMessage", {
            "origin": origin, "registrationId": registration, "data": raw.decode()})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if shown := _notifications(page):
                return shown
            time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_installable_app_push_notification_and_its_run_again_action(
    browser: Any, server: Server, module_smtp: Mailbox, push: WebPushStandIn,
) -> None:
    address = f"push-{uuid.uuid4().hex[:8]}@example.com"
    token = server.admin("create-user", address, "--plan", "pro")
    assert api(server, token, "POST", "/v1/agents",
               json={"machine_id": "laptop-7f3a"}).status_code == 201
    sub = push.subscribe(public_key(KEY))

    context = browser.new_context()
    context.grant_permissions(["notifications"], origin=server.url)
    context.add_init_script(_fake_subscribe(sub.endpoint, sub.keys))
    page = context.new_page()
    problems: list[str] = []
    page.on("dialog", lambda d: (problems.append(d.message), d.dismiss()))
    page.on("console", lambda m: problems.append(m.text)
            if "Content Security Policy" in m.text else None)
    try:
        _sign_in(page, server, module_smtp, address)

        # Installable: the manifest every page links, its icons, a worker controlling /app/.
        manifest = page.evaluate("""() => fetch(document.querySelector('link[rel=manifest]').href)
            .then(r => r.json().then(m => ({type: r.headers.get('content-type'), m})))""")
        assert manifest["type"] == "application/manifest+json"
        assert (manifest["m"]["scope"], manifest["m"]["start_url"]) == ("/app/", "/app/tasks")
        for icon in manifest["m"]["icons"]:
            size = page.evaluate("""src => new Promise((ok, bad) => { const i = new Image();
                i.onload = () => ok(i.naturalWidth + 'x' + i.naturalHeight);
                i.onerror = bad; i.src = src; })""", icon["src"])
            assert size == icon["sizes"]
        cdp = context.new_cdp_session(page)
        registrations: list[dict[str, Any]] = []
        cdp.on("ServiceWorker.workerRegistrationUpdated",
               lambda e: registrations.extend(e["registrations"]))
        cdp.send("ServiceWorker.enable")
        scope = page.evaluate("navigator.serviceWorker.ready.then(r => r.scope)")
        assert scope == f"{server.url}/app/"

        # "Enable notifications": permission, the subscription, saved as this browser's channel.
        page.goto(f"{server.url}/app/channels")
        page.click("#push-enable")
        page.wait_for_url("**/app/channels/*", timeout=30_000)
        asked = page.evaluate("JSON.parse(sessionStorage.getItem('askedKey'))")
        assert b64url(bytes(asked)) == public_key(KEY)
        assert "a browser, through 127.0.0.1" in page.content()

        # A failed task with hostile text: the server's push, decrypted by the stand-in...
        key = f"t-{uuid.uuid4().hex[:8]}"
        body = TaskEvent.from_dict({
            "type": "finished", "source": "run", "task_id": key, "machine_id": "laptop-7f3a",
            "session_id": "s-push", "cwd": "/srv/app", "status": "failure", "exit_code": 1,
            "command": HOSTILE,
            "tail": "step 1\n<b>not bold</b>"}).to_dict()
        assert api(server, token, "POST", "/v1/events", json=body).status_code == 202
        got = wait_for(lambda: [r for r in push.accepted()
                                if r.displayed["payload"].get("task") == key],
                       timeout=30, what="the task's push at the push service")[0]
        assert got.displayed["payload"]["run"] is True

        # ...delivered into the browser: the worker shows it, text as text, with its actions.
        page.goto(f"{server.url}/app/tasks")
        wait_for(lambda: page.evaluate("!!navigator.serviceWorker.controller"), timeout=30,
                 what="the worker to control the page")
        registration = next(r["registrationId"] for r in registrations
                            if r["scopeURL"] == f"{server.url}/app/" and not r["isDeleted"])
        [shown] = _delivered(cdp, page, server.url, registration, got.displayed["raw"],
                             "the notification the worker shows")
        assert HOSTILE in shown["title"] and shown["body"].endswith("<b>not bold</b>")
        assert (shown["actions"], shown["tag"], shown["data"]) == (
            ["open", "run"], f"task:{key}", {"task": key, "run": True})

        # "Run again": the open app goes to the task's page, whose form sends it.
        [worker] = [w for w in context.service_workers if w.url.endswith("/app/sw.js")]
        worker.evaluate("""async () => {
            const [n] = await self.registration.getNotifications();
            self.dispatchEvent(new NotificationEvent('notificationclick',
                                                     {notification: n, action: 'run'}));
        }""")
        page.wait_for_url(f"**/app/t/{key}?action=run-again#relayed", timeout=30_000)
        page.wait_for_selector("text=Press Run again to send it to the machine")
        assert _notifications(page) == []  # the click closed it
        page.click("button:has-text('Run again')")
        page.wait_for_url(f"**/app/t/{key}#relayed", timeout=30_000)
        queued = page.locator("#relayed tbody tr").first
        assert queued.locator("td.cmd").inner_text() == HOSTILE  # the command, queued as text
        assert queued.locator("td").nth(1).inner_text() == "web"
        assert problems == []
    finally:
        context.close()


def test_a_permission_request_is_allowed_from_the_notification(
    browser: Any, server: Server, module_smtp: Mailbox, push: WebPushStandIn,
) -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import select

    from claude_notify.cloud.server.db.models import User
    from claude_notify.cloud.server.relay import approvals
    from claude_notify.cloud.server.relay.models import Approval
    from claude_notify.cloud.server.relay.push_approvals import push_approval
    from claude_notify.cloud.server.runtime import Runtime
    from claude_notify.cloud.server.settings import Settings

    address = f"approve-{uuid.uuid4().hex[:8]}@example.com"
    server.admin("create-user", address, "--plan", "pro")
    sub = push.subscribe(public_key(KEY))
    context = browser.new_context()
    context.grant_permissions(["notifications"], origin=server.url)
    context.add_init_script(_fake_subscribe(sub.endpoint, sub.keys))
    page = context.new_page()
    problems: list[str] = []
    page.on("dialog", lambda d: (problems.append(d.message), d.dismiss()))
    page.on("console", lambda m: problems.append(m.text)
            if "Content Security Policy" in m.text else None)
    # The server's own database and keys, as the agent's tunnel would file the approval there.
    env = server.env
    runtime = Runtime.build(Settings(
        database_url=env["DATABASE_URL"], auto_migrate=False, webhook_allow_private=True,
        log_keys=(env["CLAUDE_NOTIFY_SERVER_LOG_KEYS"],), vapid_private_key=KEY,
        vapid_subject=env["CLAUDE_NOTIFY_SERVER_VAPID_SUBJECT"]))
    try:
        _sign_in(page, server, module_smtp, address)
        cdp = context.new_cdp_session(page)
        registrations: list[dict[str, Any]] = []
        cdp.on("ServiceWorker.workerRegistrationUpdated",
               lambda e: registrations.extend(e["registrations"]))
        cdp.send("ServiceWorker.enable")
        page.goto(f"{server.url}/app/channels")
        page.click("#push-enable")
        page.wait_for_url("**/app/channels/*", timeout=30_000)

        with runtime.sessions.begin() as session:
            user = session.scalar(select(User).where(User.email == address))
            assert user is not None
            row = approvals.file(session, user.id, "laptop-7f3a", {
                "id": str(uuid.uuid4()), "session_id": "s-approve", "tool_name": "Bash",
                "digest": "0" * 64, "display": HOSTILE, "cwd": "/srv/project",
                "timeout_s": 600})
            approval = row.id
        with ThreadPoolExecutor(1) as other:  # Playwright's loop runs in this thread
            other.submit(asyncio.run, push_approval(runtime, approval)).result(timeout=60)
        got = wait_for(lambda: [r for r in push.accepted()
                                if r.displayed["payload"].get("approval") == approval.hex],
                       timeout=30, what="the permission request at the push service")[0]

        page.goto(f"{server.url}/app/tasks")
        wait_for(lambda: page.evaluate("!!navigator.serviceWorker.controller"), timeout=30,
                 what="the worker to control the page")
        registration = next(r["registrationId"] for r in registrations
                            if r["scopeURL"] == f"{server.url}/app/" and not r["isDeleted"])
        [shown] = _delivered(cdp, page, server.url, registration, got.displayed["raw"],
                             "the permission request's notification")
        assert shown["title"] == "Claude wants to use Bash"
        assert shown["body"] == f"project · laptop-7f3a\n{HOSTILE}"
        assert (shown["actions"], shown["tag"]) == (["allow", "deny"], f"approval:{approval.hex}")

        [worker] = [w for w in context.service_workers if w.url.endswith("/app/sw.js")]
        worker.evaluate("""async () => {
            const [n] = await self.registration.getNotifications();
            self.dispatchEvent(new NotificationEvent('notificationclick',
                                                     {notification: n, action: 'allow'}));
        }""")

        def state() -> str | None:
            with runtime.sessions() as session:
                return session.scalar(select(Approval.state).where(Approval.id == approval))

        wait_for(lambda: state() == "allowed", timeout=30, what="the approval to be allowed")
        [said] = wait_for(lambda: [n for n in _notifications(page) if n["title"] == "Allowed"],
                          timeout=30, what="the worker's confirmation")
        assert said["tag"] == f"approval:{approval.hex}"
        with runtime.sessions() as session:
            decided = session.get(Approval, approval)
            assert decided is not None and str(decided.decided_by).startswith("web:")
        assert problems == []
    finally:
        runtime.close()
        context.close()
