"""The web app under ``/app``, through the real app, its worker and a real SMTP server, on SQLite
and PostgreSQL: signing in by e-mailed link (a GET signs nobody in), the cookie's flags, the
operator's sign-up rules, forms from other sites refused, another user's tasks not found, hostile
text shown as text, the headers every page carries, and pages that never hold a whole history."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cloud_kit import Account, Mailbox, Receiver, register_agent, wait_for
from fastapi.testclient import TestClient
from sqlalchemy import String, Uuid, column, func, select, table
from web_kit import LOCAL, browser_of, form_token, sign_in, signin_token

from claude_notify.cloud.server.db.models import ApiToken, Channel, Delivery, User
from claude_notify.cloud.server.relay.models import RelayCommand
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.cloud.server.web import security
from claude_notify.cloud.server.web.models import WebIdentity, WebSession
from claude_notify.events import TaskEvent

WEB = Path(security.__file__).parent


@pytest.fixture
def browser(client: TestClient) -> Iterator[TestClient]:
    """A browser on the server's own machine (loopback: plain HTTP cookies are allowed)."""
    with TestClient(client.app, base_url=LOCAL, follow_redirects=False) as b:
        yield b


def _task(client: TestClient, user: Account, **fields: Any) -> str:
    key = fields.pop("task_id", uuid.uuid4().hex)
    body = TaskEvent.from_dict({"type": "finished", "source": "run", "task_id": key,
                                "machine_id": "m-1", "status": "failure", "exit_code": 2,
                                "command": "make test", **fields}).to_dict()
    assert client.post("/v1/events", json=body, headers=user.headers).status_code == 202
    return key


def test_the_link_signs_in_only_when_its_page_is_posted_and_only_once(
    browser: TestClient, smtp_server: Mailbox
) -> None:
    assert browser.get("/app").headers["location"] == "/app/signin"
    assert browser.get("/app/tasks").headers["location"] == "/app/signin"
    sent = browser.post("/app/signin", data={"email": "New.Person@Example.com"})
    assert sent.status_code == 200 and "Check your mail" in sent.text
    token = signin_token(smtp_server, "new.person@example.com")

    page = browser.get("/app/signin/confirm", params={"token": token})  # a mail scanner's GET
    assert page.status_code == 200 and "new.person@example.com" in page.text
    assert "set-cookie" not in page.headers
    assert browser.get("/app/tasks").status_code == 303  # still nobody

    confirmed = browser.post("/app/signin/confirm", data={"token": token})
    assert (confirmed.status_code, confirmed.headers["location"]) == (303, "/app/tasks")
    cookie = confirmed.headers["set-cookie"]
    assert cookie.startswith("claude_notify_session=")
    flags = {f.strip().lower() for f in cookie.split(";")[1:]}
    assert {"httponly", "samesite=lax", "path=/"} <= flags and "secure" not in flags
    tasks = browser.get("/app/tasks")
    assert tasks.status_code == 200 and "No tasks yet" in tasks.text

    other = browser_of(browser)
    assert other.post("/app/signin/confirm", data={"token": token}).status_code == 404
    assert other.get("/app/signin/confirm", params={"token": token}).status_code == 404
    assert other.get("/app/tasks").status_code == 303


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)  # SQLite takes its write lock first: no race there
def test_two_links_for_a_new_address_confirmed_at_once_make_one_account(
    client: TestClient, runtime: Runtime, smtp_server: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other link's confirmation makes the account between this one's look and insert."""
    from claude_notify.cloud.server import auth

    address = "racer@example.com"
    first, second = browser_of(client), browser_of(client)
    assert first.post("/app/signin", data={"email": address}).status_code == 200
    token = signin_token(smtp_server, address)
    real = auth.create_account

    def raced(session: Any, email: str, **kw: Any) -> Any:
        with runtime.sessions.begin() as other:  # the concurrent confirmation commits first
            real(other, email, **kw)
        return real(session, email, **kw)

    monkeypatch.setattr(auth, "create_account", raced)
    confirmed = second.post("/app/signin/confirm", data={"token": token})
    assert confirmed.status_code == 303, confirmed.text
    assert second.get("/app/tasks").status_code == 200
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(User)
                              .where(User.email == address)) == 1


def test_away_from_loopback_the_cookie_is_secure_and_host_only(
    client: TestClient, smtp_server: Mailbox
) -> None:
    remote = browser_of(client, "https://notify.example.com")
    assert remote.post("/app/signin", data={"email": "far@example.com"},
                       headers={"Origin": "https://notify.example.com"}).status_code == 200
    confirmed = remote.post("/app/signin/confirm",
                            data={"token": signin_token(smtp_server, "far@example.com")})
    cookie = confirmed.headers["set-cookie"]
    assert cookie.startswith("__Host-claude_notify_session=")
    assert "secure" in cookie.lower() and "domain" not in cookie.lower()


def _login_mails(runtime: Runtime, address: str) -> int:
    with runtime.sessions() as session:
        rows = session.scalars(select(Delivery).where(Delivery.kind == "login")).all()
        return sum((row.payload or {}).get("to") == address for row in rows)


@pytest.mark.parametrize(("signup", "domains", "stranger_mailed"), [
    (False, (), False), (True, ("Corp.Example",), False), (True, (), True)])
def test_the_operator_decides_who_may_sign_up_and_the_page_never_says_who_exists(
    client: TestClient, runtime: Runtime, settings: Settings, smtp_server: Mailbox,
    make_user: Callable[..., Account], signup: bool, domains: tuple[str, ...],
    stranger_mailed: bool,
) -> None:
    runtime.settings = settings.replace(web_signup=signup, web_signup_domains=domains)
    member = make_user(email="member@example.com")
    b = browser_of(client)
    known = b.post("/app/signin", data={"email": member.email})
    stranger = b.post("/app/signin", data={"email": "stranger@example.com"})
    colleague = b.post("/app/signin", data={"email": "new@corp.example"})
    assert known.status_code == stranger.status_code == colleague.status_code == 200
    assert known.text.replace(member.email, "X") == stranger.text.replace(
        "stranger@example.com", "X")
    sign_in(b, smtp_server, member.email)  # an existing user always may
    assert _login_mails(runtime, "stranger@example.com") == int(stranger_mailed)
    assert _login_mails(runtime, "new@corp.example") == int(signup)


@pytest.mark.parametrize("headers", [{"Origin": "https://evil.example"},
                                     {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}])
def test_a_form_posted_from_another_site_is_refused(
    browser: TestClient, smtp_server: Mailbox, runtime: Runtime, headers: dict[str, str]
) -> None:
    refused = browser.post("/app/signin", data={"email": "a@example.com"}, headers=headers)
    assert refused.status_code == 403
    assert _login_mails(runtime, "a@example.com") == 0
    sign_in(browser, smtp_server, "a@example.com")
    token = form_token(browser.get("/app/tasks").text)
    out = browser.post("/app/signout", data={"csrf": token}, headers=headers)
    assert out.status_code == 403 and browser.get("/app/tasks").status_code == 200


def test_a_signed_in_form_needs_the_sessions_token(browser: TestClient,
                                                   smtp_server: Mailbox) -> None:
    sign_in(browser, smtp_server, "b@example.com")
    for data in ({}, {"csrf": "guess"}):
        assert browser.post("/app/signout", data=data).status_code == 403
    assert browser.get("/app/tasks").status_code == 200
    token = form_token(browser.get("/app/tasks").text)
    out = browser.post("/app/signout", data={"csrf": token})
    assert (out.status_code, out.headers["location"]) == (303, "/app/signin")
    assert browser.get("/app/tasks").status_code == 303


def test_another_users_task_is_not_found_and_not_listed(
    client: TestClient, smtp_server: Mailbox, make_user: Callable[..., Account]
) -> None:
    alice, bob = make_user(), make_user()
    theirs = _task(client, alice, command="make secret-target")
    b = browser_of(client)
    sign_in(b, smtp_server, bob.email)
    assert b.get(f"/app/t/{theirs}").status_code == 404
    assert "secret-target" not in b.get("/app/tasks").text
    a = browser_of(client)
    sign_in(a, smtp_server, alice.email)
    assert "secret-target" in a.get(f"/app/t/{theirs}").text


HOSTILE = "<script>alert(1)</script>{{7*7}}\u202eevil\x1b[31mred\x1b[0m<img src=x onerror=alert(2)>"


class _Scripts(HTMLParser):
    """Every script and style a page would run or apply inline."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "style" or (tag == "script" and not named.get("src")):
            self.inline.append(tag)
        self.inline += [name for name in named if name == "style" or name.startswith("on")]


def test_hostile_text_shows_as_text_and_pages_run_no_inline_code(
    client: TestClient, smtp_server: Mailbox, make_user: Callable[..., Account]
) -> None:
    user = make_user()
    key = _task(client, user, command=HOSTILE, tail=HOSTILE + "\n", task_id="k<b>1",
                host=HOSTILE, cwd="/srv/" + HOSTILE)
    b = browser_of(client)
    sign_in(b, smtp_server, user.email)
    for path in ("/app/tasks", f"/app/t/{key}", "/app/sessions", "/app/signin",
                 "/app/deliveries", "/app/access", "/app/account"):
        page = b.get(path)
        assert page.status_code == 200, path
        assert "<script>alert" not in page.text and "<img src=x" not in page.text
        assert "\u202e" not in page.text and "\x1b" not in page.text
        # shown literally, {{7*7}} included: nothing a user sent is evaluated
        assert "&lt;script&gt;alert(1)&lt;/script&gt;{{7*7}}" in page.text or path in (
            "/app/sessions", "/app/signin", "/app/deliveries", "/app/access",
            "/app/account")
        scripts = _Scripts()
        scripts.feed(page.text)
        assert scripts.inline == [], path
        assert page.headers["content-security-policy"] == security.CSP
        assert "'unsafe-inline'" not in security.CSP and "'unsafe-eval'" not in security.CSP
        for name, value in (("x-frame-options", "DENY"), ("referrer-policy", "same-origin"),
                            ("cache-control", "no-store"), ("x-content-type-options", "nosniff")):
            assert page.headers[name] == value, (path, name)
    shown = b.get(f"/app/t/{key}").text
    assert "red&lt;img" in shown  # the colour codes are gone, the text stays


def test_the_tasks_list_pages_through_everything_once(
    client: TestClient, smtp_server: Mailbox, make_user: Callable[..., Account]
) -> None:
    user = make_user()
    made = {_task(client, user, command=f"job {n}") for n in range(120)}
    b = browser_of(client)
    sign_in(b, smtp_server, user.email)
    seen: list[str] = []
    url: str | None = "/app/tasks"
    pages = 0
    while url:
        page = b.get(url).text
        rows = re.findall(r'href="/app/t/([0-9a-f]{32})"', page)
        assert len(rows) <= 50
        seen += rows
        pages += 1
        nxt = re.search(r'rel="next" href="([^"]+)"', page)
        url = nxt.group(1).replace("&amp;", "&") if nxt else None
    assert pages == 3 and len(seen) == len(set(seen)) == 120 and set(seen) == made


def test_the_first_page_polls_its_listing_which_is_304_until_something_changes(
    client: TestClient, smtp_server: Mailbox, make_user: Callable[..., Account]
) -> None:
    user = make_user()
    b = browser_of(client)
    sign_in(b, smtp_server, user.email)
    page = b.get("/app/tasks").text
    assert ('hx-get="/app/tasks?status=&amp;machine=&amp;source=&amp;within=&amp;part=listing"'
            in page)
    assert f"--email {user.email}" in page  # the onboarding's own commands
    first = b.get("/app/tasks", params={"part": "listing"})
    assert first.status_code == 200 and first.text.lstrip().startswith('<div id="listing"')
    assert "<html" not in first.text  # a fragment, not a page
    tag = first.headers["etag"]
    assert first.headers["cache-control"] == "private, no-cache"
    same = b.get("/app/tasks", params={"part": "listing"}, headers={"If-None-Match": tag})
    assert (same.status_code, same.text) == (304, "")
    key = _task(client, user, command="make live")
    changed = b.get("/app/tasks", params={"part": "listing"}, headers={"If-None-Match": tag})
    assert changed.status_code == 200 and "make live" in changed.text
    assert changed.headers["etag"] != tag
    _task(client, user, task_id=key, type="finished", status="success", exit_code=0,
          command="make live")  # the same task, now finished: the listing changes again
    again = b.get("/app/tasks", params={"part": "listing"},
                  headers={"If-None-Match": changed.headers["etag"]})
    assert again.status_code == 200 and "s-success" in again.text
    older = b.get("/app/tasks", params={"cursor": "x"})  # not ours: back to the first page
    assert older.status_code == 303


def _append(client: TestClient, user: Account, key: str, data: bytes) -> None:
    sent = client.post(f"/v1/tasks/{key}/log", content=data,
                       headers={**user.headers, "content-type": "application/octet-stream"})
    assert sent.status_code == 200, sent.text


def test_a_streamed_log_grows_on_the_task_page_and_downloads_as_it_was_sent(
    client: TestClient, smtp_server: Mailbox, make_user: Callable[..., Account]
) -> None:
    user, other = make_user(), make_user()
    key = client.post("/v1/tasks", json={"cmd": "make train", "task_id": "run:1 <x>"},
                      headers=user.headers).json()["task_id"]
    first = b"epoch 1 \x1b[32mok\x1b[0m\n<script>alert(1)</script>\n"
    _append(client, user, quote(key, safe=""), first)
    b = browser_of(client)
    sign_in(b, smtp_server, user.email)
    path = f"/app/t/{quote(key, safe='')}"
    page = b.get(path).text
    assert 'id="log" hx-get=' in page  # running: it polls
    assert 'epoch 1 <span class="ansi-green">ok\n</span>' in page  # its colour, as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "\x1b" not in page
    log = b.get(path, params={"part": "log"})
    tag = log.headers["etag"]
    assert b.get(path, params={"part": "log"}, headers={"If-None-Match": tag}).status_code == 304
    _append(client, user, quote(key, safe=""), b"epoch 2 done\n")
    grown = b.get(path, params={"part": "log"}, headers={"If-None-Match": tag})
    assert grown.status_code == 200 and "epoch 2 done" in grown.text

    whole = first + b"epoch 2 done\n"
    digest = hashlib.sha256(whole).hexdigest()
    assert client.put(f"/v1/tasks/{quote(key, safe='')}/log/digest", headers=user.headers,
                      json={"sha256": digest, "bytes": len(whole)}).status_code == 200
    _task(client, user, task_id=key, status="success", exit_code=0, command="make train")
    done = b.get(path).text
    assert digest in done and 'hx-get="/app/t/' not in done  # finished: no more polling
    got = b.get(f"{path}/log")
    assert got.content == whole  # as sent, escapes and all: a file, never a page
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["content-disposition"] == 'attachment; filename="task-run_1__x_.log"'
    stranger = browser_of(client)
    sign_in(stranger, smtp_server, other.email)
    assert stranger.get(f"{path}/log").status_code == 404
    assert stranger.get(path, params={"part": "log"}).status_code == 404


def test_a_log_whose_key_is_gone_leaves_the_task_page_readable(
    client: TestClient, runtime: Runtime, settings: Settings, smtp_server: Mailbox,
    make_user: Callable[..., Account],
) -> None:
    from claude_notify.cloud.server.logcrypt import new_key

    user = make_user()
    key = client.post("/v1/tasks", json={"cmd": "make old"}, headers=user.headers
                      ).json()["task_id"]
    _append(client, user, key, b"written under the old key\n")
    b = browser_of(client)
    sign_in(b, smtp_server, user.email)
    runtime.settings = settings.replace(log_keys=(new_key("k9"),))  # the old key retired
    page = b.get(f"/app/t/{key}")
    assert page.status_code == 200 and "cannot open the stored log" in page.text
    assert "make old" in page.text
    download = b.get(f"/app/t/{key}/log")
    assert download.status_code == 409 and "no longer configured" in download.text


def _relay_rows(runtime: Runtime) -> list[tuple[str, str, str | None, str, str]]:
    with runtime.sessions() as session:
        return [(r.command, r.source, r.cwd, r.kind, r.state) for r in session.scalars(
            select(RelayCommand).order_by(RelayCommand.created_at))]


def test_run_again_and_a_reply_from_the_task_page_go_through_the_relay(
    client: TestClient, runtime: Runtime, smtp_server: Mailbox,
    make_user: Callable[..., Account],
) -> None:
    user = make_user(plan="pro")
    register_agent(client, user, "machine-0001")
    key = _task(client, user, command="make test", session_id="tty:/dev/pts/3:33",
                cwd="/srv/app", machine_id="machine-0001")
    b = browser_of(client)
    sign_in(b, smtp_server, user.email)
    path = f"/app/t/{key}"
    page = b.get(path).text
    assert "Run on machine-0001" in page and "/srv/app" in page
    token = form_token(page)
    assert b.post(f"{path}/run", data={"again": "1"}).status_code == 403  # no form token
    again = b.post(f"{path}/run", data={"csrf": token, "again": "1", "command": "rm -rf ~"})
    assert (again.status_code, again.headers["location"]) == (303, f"{path}#relayed")
    replied = b.post(f"{path}/run", data={"csrf": token, "command": "  ./next.sh --fast  "})
    assert replied.status_code == 303
    assert _relay_rows(runtime) == [("make test", "web", "/srv/app", "shell", "queued"),
                                    ("./next.sh --fast", "web", "/srv/app", "shell", "queued")]
    shown = b.get(path).text
    assert "./next.sh --fast" in shown and ">web<" in shown
    banned = b.post(f"{path}/run", data={"csrf": token, "command": "sudo shutdown -h now"})
    assert banned.status_code == 403 and "banned keyword" in banned.text
    assert len(_relay_rows(runtime)) == 2
    audit = client.get("/v1/audit", headers=user.headers).json()
    assert {row["actor"][:12] for row in audit} == {"web session "}


def test_the_relay_form_is_for_pro_accounts_and_their_own_tasks(
    client: TestClient, runtime: Runtime, smtp_server: Mailbox,
    make_user: Callable[..., Account],
) -> None:
    free, pro = make_user(plan="free"), make_user(plan="pro")
    mine = _task(client, free, command="make", session_id="s-1", cwd="/srv")
    theirs = _task(client, pro, command="make", session_id="s-2", cwd="/srv")
    b = browser_of(client)
    sign_in(b, smtp_server, free.email)
    page = b.get(f"/app/t/{mine}").text
    assert "Run again" not in page
    refused = b.post(f"/app/t/{mine}/run", data={"csrf": form_token(page), "again": "1"})
    assert refused.status_code == 403 and "pro plan" in refused.text
    assert b.post(f"/app/t/{theirs}/run", data={"csrf": form_token(page), "again": "1"}
                  ).status_code == 404
    assert b.get(f"/app/t/{mine}", params={"problem": "Call +1 555 0100 now"}).text.count(
        "555 0100") == 0  # the page's notice is never a request's text
    assert _relay_rows(runtime) == []


def test_a_dead_letter_is_listed_with_its_reason_and_replayed_from_the_page(
    client: TestClient, smtp_server: Mailbox, receiver: Receiver,
    make_user: Callable[..., Account],
) -> None:
    user, other = make_user(plan="pro"), make_user(plan="pro")
    made = client.post("/v1/channels", headers=user.headers, json={
        "type": "webhook", "config": {"url": receiver.url}, "rules": {"on": ["finished"]}})
    assert made.status_code == 201, made.text
    receiver.answer(500, 500, 500, 500)
    _task(client, user, command="make <b>deploy</b>")
    dead_id = wait_for(lambda: next((d["id"] for d in client.get(
        "/v1/notifications", params={"status": "dead"}, headers=user.headers).json()["items"]),
        None), what="a dead letter")
    b = browser_of(client)
    sign_in(b, smtp_server, user.email)
    page = b.get("/app/deliveries", params={"status": "dead"}).text
    assert "gave up after 4 attempts: HTTP 500" in page
    assert f"/app/deliveries/{dead_id}/replay" in page
    assert "<svg" in page and "<b>deploy" not in page
    token = form_token(page)
    stranger = browser_of(client)
    sign_in(stranger, smtp_server, other.email)
    stranger_token = form_token(stranger.get("/app/deliveries").text)
    assert stranger.post(f"/app/deliveries/{dead_id}/replay",
                         data={"csrf": stranger_token}).status_code == 404
    assert b.post(f"/app/deliveries/{dead_id}/replay", data={}).status_code == 403
    replayed = b.post(f"/app/deliveries/{dead_id}/replay", data={"csrf": token})
    assert (replayed.status_code, replayed.headers["location"]) == (303, "/app/deliveries")
    wait_for(lambda: client.get(f"/v1/notifications/{dead_id}", headers=user.headers)
             .json()["status"] == "sent", what="the replayed delivery to be sent")
    again = b.post(f"/app/deliveries/{dead_id}/replay", data={"csrf": token})
    assert again.status_code == 409 and "only dead letters" in again.text
    listed = b.get("/app/deliveries").text
    assert "1 in all" in listed  # the chart counts the task's notification, not sign-in mail


def test_a_token_made_on_the_page_is_shown_once_scoped_and_revocable(
    client: TestClient, smtp_server: Mailbox, make_user: Callable[..., Account]
) -> None:
    user, other = make_user(), make_user()
    b = browser_of(client)
    sign_in(b, smtp_server, user.email)
    token = form_token(b.get("/app/access").text)
    refused = b.post("/app/tokens", data={"csrf": token, "scope": ["admin"]})
    assert refused.status_code == 422
    made = b.post("/app/tokens", data={"csrf": token, "name": "ci <box>",
                                       "scope": ["tasks:read", "events:write"]})
    assert made.status_code == 201
    secret = re.search(r'<pre class="out">(cnt_[^<]+)</pre>', made.text).group(1)  # type: ignore[union-attr]
    bearer = {"Authorization": f"Bearer {secret}"}
    assert client.get("/v1/tasks", headers=bearer).status_code == 200
    wrong_scope = client.post("/v1/channels", headers=bearer,
                              json={"type": "webhook", "config": {"url": "https://x.example"}})
    assert wrong_scope.status_code == 403  # channels:write was not ticked
    listing = b.get("/app/access").text
    assert secret not in listing and "ci &lt;box&gt;" in listing
    row = listing[listing.index("ci &lt;box&gt;"):]
    token_id = re.search(r'action="/app/tokens/([0-9a-f-]{36})/revoke"', row).group(1)  # type: ignore[union-attr]
    stranger = browser_of(client)
    sign_in(stranger, smtp_server, other.email)
    stranger_token = form_token(stranger.get("/app/access").text)
    assert stranger.post(f"/app/tokens/{token_id}/revoke",
                         data={"csrf": stranger_token}).status_code == 404
    assert client.get("/v1/tasks", headers=bearer).status_code == 200
    assert b.post(f"/app/tokens/{token_id}/revoke", data={"csrf": token}).status_code == 303
    assert client.get("/v1/tasks", headers=bearer).status_code == 401
    assert client.get("/v1/tasks", headers=user.headers).status_code == 200  # only that one


def test_revoking_a_machine_on_the_page_expires_what_waits_for_it(
    client: TestClient, runtime: Runtime, smtp_server: Mailbox,
    make_user: Callable[..., Account],
) -> None:
    user = make_user(plan="pro")
    register_agent(client, user, "machine-0002")
    _task(client, user, command="make", session_id="s-9", cwd="/srv", machine_id="machine-0002")
    queued = client.post("/v1/commands", json={"session_id": "s-9", "command": "make again"},
                         headers=user.headers)
    assert queued.status_code == 202, queued.text
    b = browser_of(client)
    sign_in(b, smtp_server, user.email)
    page = b.get("/app/access").text
    assert "machine-0002" in page
    machine = page[page.index("machine-0002"):]
    agent_token = re.search(r'action="/app/tokens/([0-9a-f-]{36})/revoke"', machine).group(1)  # type: ignore[union-attr]
    assert b.post(f"/app/tokens/{agent_token}/revoke",
                  data={"csrf": form_token(page)}).status_code == 303
    assert "machine-0002" not in b.get("/app/access").text
    assert _relay_rows(runtime) == [("make again", "api", "/srv", "shell", "expired")]


def _rows_of(runtime: Runtime, user_id: uuid.UUID, email: str) -> dict[str, int]:
    """How many rows of each table belong to the account, by owner or by address."""
    counts: dict[str, int] = {}
    with runtime.engine.connect() as conn:
        for name in ("tasks", "events", "notifications", "channels", "api_tokens",
                     "web_sessions", "task_logs", "relay_commands", "relay_audit",
                     "relay_agents", "approvals"):
            owned = table(name, column("user_id", Uuid()))
            counts[name] = conn.execute(select(func.count()).select_from(owned)
                                        .where(owned.c.user_id == user_id)).scalar_one()
        for name in ("workspaces", "workspace_usage"):  # their own workspace's id is theirs
            spaced = table(name, column("id" if name == "workspaces" else "workspace_id", Uuid()))
            key = next(iter(spaced.c))
            counts[name] = conn.execute(select(func.count()).select_from(spaced)
                                        .where(key == user_id)).scalar_one()
        for name in ("users", "web_signins", "login_requests"):
            addressed = table(name, column("email", String()))
            counts[name] = conn.execute(select(func.count()).select_from(addressed)
                                        .where(addressed.c.email == email)).scalar_one()
    return counts


def test_the_export_holds_the_accounts_data_and_no_secret(
    client: TestClient, smtp_server: Mailbox, make_user: Callable[..., Account],
    runtime: Runtime,
) -> None:
    user, other = make_user(plan="pro"), make_user(plan="pro")
    made = client.post("/v1/channels", headers=user.headers, json={
        "type": "webhook", "config": {"url": "https://hooks.example.com/x"}})
    secret = made.json()["config"]["secret"]
    _task(client, user, command="make export", tail="SEALED-TAIL-TEXT\n")
    _task(client, other, command="make theirs")
    _approval(runtime, user.user_id)
    b = browser_of(client)
    sign_in(b, smtp_server, user.email)
    got = b.get("/app/account/export")
    assert got.headers["content-disposition"].startswith("attachment;")
    data = json.loads(got.content)
    assert data["account"]["email"] == user.email
    assert [t["command"] for t in data["tasks"]] == ["make export"]
    assert data["tasks"][0]["events"][0]["event"]["tail"] == "SEALED-TAIL-TEXT\n"  # opened
    assert data["channels"][0]["config"] == {"url": "https://hooks.example.com/x"}
    assert [(a["display"], a["state"]) for a in data["approvals"]] == [("make deploy",
                                                                          "pending")]
    raw = got.text
    for never in (secret, user.token, "make theirs", "token_hash", "secret_hash"):
        assert never not in raw


def test_deleting_the_account_takes_everything_of_it_and_nothing_else(
    client: TestClient, runtime: Runtime, smtp_server: Mailbox,
    make_user: Callable[..., Account],
) -> None:
    user, other = make_user(plan="pro"), make_user(plan="pro")
    register_agent(client, user, "machine-0003")
    key = _task(client, user, command="make", session_id="s-1", cwd="/srv",
                machine_id="machine-0003")
    _append(client, user, key, b"some output\n")
    assert client.post("/v1/commands", json={"session_id": "s-1", "command": "make again"},
                       headers=user.headers).status_code == 202
    _task(client, other, command="make theirs")
    _approval(runtime, user.user_id)
    _approval(runtime, other.user_id)
    b = browser_of(client)
    sign_in(b, smtp_server, user.email)
    before = _rows_of(runtime, user.user_id, user.email)
    assert before["tasks"] and before["task_logs"] and before["relay_commands"]
    assert before["approvals"] == 1
    theirs = _rows_of(runtime, other.user_id, other.email)
    token = form_token(b.get("/app/account").text)
    wrong = b.post("/app/account/delete", data={"csrf": token, "confirm": other.email})
    assert wrong.status_code == 422 and _rows_of(runtime, user.user_id, user.email) == before
    assert b.post("/app/account/delete", data={"confirm": user.email}).status_code == 403
    gone = b.post("/app/account/delete", data={"csrf": token, "confirm": user.email.upper()})
    assert gone.status_code == 200 and "deleted" in gone.text
    assert set(_rows_of(runtime, user.user_id, user.email).values()) == {0}
    assert _rows_of(runtime, other.user_id, other.email) == theirs
    assert client.get("/v1/tasks", headers=user.headers).status_code == 401
    assert b.get("/app/tasks").status_code == 303


def test_an_account_whose_subscription_still_renews_is_not_deleted_until_it_is_cancelled(
    client: TestClient, runtime: Runtime, smtp_server: Mailbox,
    make_user: Callable[..., Account],
) -> None:
    from claude_notify.cloud.server.billing.models import BillingAccount

    user = make_user(plan="pro")
    with runtime.sessions.begin() as db:  # as billing records a paid, renewing subscription
        db.add(BillingAccount(workspace_id=user.user_id, customer_id=f"cus_{uuid.uuid4().hex[:12]}",
                              subscription_id="sub_1", status="active"))
    b = browser_of(client)
    sign_in(b, smtp_server, user.email)
    exported = json.loads(b.get("/app/account/export").content)
    assert exported["billing"][0]["status"] == "active"
    token = form_token(b.get("/app/account").text)
    before = _rows_of(runtime, user.user_id, user.email)
    refused = b.post("/app/account/delete", data={"csrf": token, "confirm": user.email})
    assert refused.status_code == 409 and "still renews: cancel it first" in refused.text
    assert _rows_of(runtime, user.user_id, user.email) == before
    with runtime.sessions.begin() as db:  # cancelled in the Portal: it ends with its period
        db.get(BillingAccount, user.user_id).cancel_at_period_end = True  # type: ignore[union-attr]
    gone = b.post("/app/account/delete", data={"csrf": token, "confirm": user.email})
    assert gone.status_code == 200 and "deleted" in gone.text
    with runtime.sessions() as db:
        assert db.get(BillingAccount, user.user_id) is None


ID_PARAMETERS = ("key", "session_id", "delivery_id", "token_id", "channel_id", "identity_id",
                 "approval_id", "invite_id", "user_id")
"""Every kind of id an ``/app`` path takes: a new one fails the sweeps until it is added here
and to the two-user sweep's rows."""


def _approval(runtime: Runtime, user_id: uuid.UUID, *, expired: bool = False) -> str:
    """A pending permission request of the user's (already past its time: ``expired``)."""
    from datetime import timedelta

    from claude_notify.cloud.server.relay.models import Approval
    from claude_notify.events import utcnow

    approval_id = uuid.uuid4()
    with runtime.sessions.begin() as db:
        db.add(Approval(id=approval_id, user_id=user_id, machine_id="m-1", session_id="s-1",
                        tool_name="Bash", digest="0" * 64, display="make deploy",
                        state="pending",
                        expires_at=utcnow() + timedelta(minutes=-1 if expired else 10)))
    return str(approval_id)


def _approval_state(runtime: Runtime, approval_id: str) -> str:
    from claude_notify.cloud.server.relay.models import Approval

    with runtime.sessions() as db:
        row = db.get(Approval, uuid.UUID(approval_id))
        assert row is not None
        return row.state


def _app_routes(method: str, fill: dict[str, str] | None = None,
                with_ids: bool = False) -> list[str]:
    """Every ``/app`` route of ``method`` (only those with an id in the path: ``with_ids``), its
    path parameters filled from ``fill`` (default: ids nobody has)."""
    from starlette.routing import Route

    from claude_notify.cloud.server.web.pages import router

    fill = fill or {"key": "no-such-task", **{p: str(uuid.uuid4()) for p in ID_PARAMETERS[1:]}}
    return [re.sub(r"\{(\w+)\}", lambda m: fill[m.group(1)], route.path)
            for route in router.routes
            if isinstance(route, Route) and method in (route.methods or ())
            and (not with_ids or "{" in route.path)]


PUBLIC = {"/app", "/app/", "/app/signin", "/app/signin/confirm", "/app/verify",
          "/app/signin/github", "/app/signin/github/callback", "/app/sw.js", "/app/invite"}
"""Pages for someone not signed in: signing in (by link or GitHub: the callback acts only for the
browser holding its flow's cookie, see test_web_github), a recipient confirming a mailed
link, and the service worker's script (the same for everyone, like the static files)."""
KEYED = re.compile(r"/app/approvals/[0-9a-f-]{36}/link")
"""The e-mailed approval link's page: the same page for every id, reading nothing (its key is
in the fragment; its POSTs want the key, see test_approval_links), so it needs no session and
says nothing of another user's request."""


def test_every_page_needs_a_session_and_every_form_refuses_another_site(
    client: TestClient, smtp_server: Mailbox
) -> None:
    gets, posts = _app_routes("GET"), _app_routes("POST")
    assert len(gets) >= 9 and len(posts) >= 9  # the sweep sees the routes, new ones included
    stranger = browser_of(client)
    for path in gets:
        if path not in PUBLIC and not KEYED.fullmatch(path):
            answer = stranger.get(path)
            signin = "/app/signin" if path == "/app/tasks" else (
                "/app/signin?next=" + quote(path, safe=""))  # where signing in will end
            assert (answer.status_code, answer.headers.get("location")) == (303, signin), path
    b = browser_of(client)
    sign_in(b, smtp_server, "sweep@example.com")
    token = form_token(b.get("/app/tasks").text)
    for path in posts:
        answer = b.post(path, data={"csrf": token, "email": "x@example.com", "token": "t",
                                    "confirm": "sweep@example.com"},
                        headers={"Origin": "https://evil.example"})
        assert answer.status_code == 403, path
    assert b.get("/app/tasks").status_code == 200  # nothing the sweep posted took effect


def _channel_state(runtime: Runtime, channel_id: str) -> tuple[object, ...]:
    with runtime.sessions() as db:
        row = db.get(Channel, uuid.UUID(channel_id))
        assert row is not None
        return (row.name, row.config, row.rules, row.enabled, row.verify_hash)


def test_no_page_or_form_reaches_another_users_rows_by_their_ids(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime, receiver: Receiver,
    make_user: Callable[..., Account],
) -> None:
    """User A, signed in and holding a valid form token, is given user B's real ids in every
    ``/app`` path: every page and every form answers 404, and B's rows stay as they were."""
    a, b_user = make_user(plan="pro"), make_user(plan="pro")
    owner = browser_of(client)
    sign_in(owner, smtp_server, b_user.email)
    made = client.post("/v1/channels", headers=b_user.headers, json={
        "type": "webhook", "config": {"url": receiver.url}, "rules": {"on": ["finished"]}})
    assert made.status_code == 201, made.text
    key = _task(client, b_user, command="b's task")
    with runtime.sessions.begin() as db:
        delivery = db.scalar(select(Delivery.id).where(Delivery.user_id == b_user.user_id))
        db.add(WebIdentity(provider="github", subject="777", user_id=b_user.user_id))
    invited = client.post("/v1/workspace/invites", headers=b_user.headers,
                          json={"email": "b-friend@example.com"})
    assert invited.status_code == 201, invited.text
    with runtime.sessions() as db:
        identity = db.scalar(select(WebIdentity.id).where(WebIdentity.user_id == b_user.user_id))
        session_id = db.scalar(select(WebSession.id).where(WebSession.user_id == b_user.user_id))
        token_id = db.scalar(select(ApiToken.id).where(ApiToken.user_id == b_user.user_id))
    fill = {"key": key, "session_id": str(session_id), "delivery_id": str(delivery),
            "token_id": str(token_id), "channel_id": made.json()["id"],
            "identity_id": str(identity), "approval_id": _approval(runtime, b_user.user_id),
            "invite_id": invited.json()["id"], "user_id": str(b_user.user_id)}
    assert set(fill) == set(ID_PARAMETERS) and all(fill.values())
    before = _rows_of(runtime, b_user.user_id, b_user.email)
    channel_before = _channel_state(runtime, made.json()["id"])

    attacker = browser_of(client)
    sign_in(attacker, smtp_server, a.email)
    token = form_token(attacker.get("/app/tasks").text)
    gets = _app_routes("GET", fill, with_ids=True)
    posts = _app_routes("POST", fill, with_ids=True)
    assert len(gets) >= 3 and len(posts) >= 15
    for path in gets:
        if KEYED.fullmatch(path):  # the same page for any id, B's included
            assert fill["approval_id"] not in (page := attacker.get(path).text)
            assert "make deploy" not in page
            continue
        assert attacker.get(path).status_code == 404, path
    for path in posts:
        answer = attacker.post(path, data={"csrf": token, "command": "id", "again": "1",
                                           "code": "x", "source": "x", "action": "save",
                                           "on": ["failure"], "allow": "on"})
        assert answer.status_code == 404, path
    assert _rows_of(runtime, b_user.user_id, b_user.email) == before
    assert _channel_state(runtime, made.json()["id"]) == channel_before
    assert _approval_state(runtime, fill["approval_id"]) == "pending"
    assert owner.get("/app/tasks").status_code == 200  # B's session was not signed out
    with runtime.sessions() as db:
        assert db.scalar(select(ApiToken.revoked_at).where(ApiToken.id == token_id)) is None
        assert db.scalar(select(func.count()).select_from(WebIdentity)
                         .where(WebIdentity.user_id == b_user.user_id)) == 1


def _every_row(runtime: Runtime) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table (what a GET must leave as it was), sessions' last-seen time
    aside."""
    from claude_notify.cloud.server.db.models import Base

    out: dict[str, list[tuple[object, ...]]] = {}
    with runtime.engine.connect() as conn:
        for name, t in Base.metadata.tables.items():
            cols = [c for c in t.columns if c.name != "last_seen_at"]
            out[name] = sorted(tuple(map(repr, r)) for r in conn.execute(select(*cols)))
    return out


def test_no_page_changes_anything_when_opened_or_prefetched(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime, receiver: Receiver,
    make_user: Callable[..., Account],
) -> None:
    """Every GET under ``/app``, with the user's own ids (and as a browser's prefetch), leaves
    every row of every table as it was."""
    user = make_user(plan="pro")
    b = browser_of(client)
    sign_in(b, smtp_server, user.email)
    made = client.post("/v1/channels", headers=user.headers, json={
        "type": "webhook", "config": {"url": receiver.url}, "rules": {"on": ["finished"]}})
    key = _task(client, user, command="mine")
    wait_for(lambda: client.get("/v1/notifications", headers=user.headers).json()["items"],
             what="the task's notification")
    approval_id = _approval(runtime, user.user_id, expired=True)
    with runtime.sessions() as db:
        fill = {"key": key, "channel_id": made.json()["id"],
                "session_id": str(db.scalar(select(WebSession.id))),
                "delivery_id": str(db.scalar(select(Delivery.id).where(
                    Delivery.user_id == user.user_id))),
                "token_id": str(db.scalar(select(ApiToken.id).where(
                    ApiToken.user_id == user.user_id))),
                "identity_id": str(uuid.uuid4()),
                # past its time: the page shows it expired, and writes nothing to say so
                "approval_id": approval_id, "invite_id": str(uuid.uuid4()),
                "user_id": str(user.user_id)}
    wait_for(lambda: all(d["status"] in ("sent", "dead") for d in client.get(
        "/v1/notifications", headers=user.headers).json()["items"]), what="deliveries settled")
    before = _every_row(runtime)
    for path in _app_routes("GET", fill):
        for headers in ({}, {"Sec-Purpose": "prefetch", "Purpose": "prefetch"}):
            assert b.get(path, headers=headers).status_code < 500, path
    assert _every_row(runtime) == before


def _sessions(b: TestClient) -> dict[str, bool]:
    """The sessions page's rows: id → whether it is this browser's."""
    rows = b.get("/app/sessions").text.split("<tr>")[2:]
    return {re.search(r"/app/sessions/([0-9a-f-]{36})/revoke", row).group(1):  # type: ignore[union-attr]
            "(this one)" in row for row in rows}


def test_a_session_signed_out_from_another_browser_is_over(
    client: TestClient, smtp_server: Mailbox
) -> None:
    phone, laptop, stranger = browser_of(client), browser_of(client), browser_of(client)
    sign_in(phone, smtp_server, "c@example.com")
    sign_in(laptop, smtp_server, "c@example.com")
    sign_in(stranger, smtp_server, "d@example.com")
    listed = _sessions(laptop)
    assert sorted(listed.values()) == [False, True]
    [phone_id] = [sid for sid, here in listed.items() if not here]
    [laptop_id] = [sid for sid, here in listed.items() if here]

    stranger_token = form_token(stranger.get("/app/tasks").text)
    assert stranger.post(f"/app/sessions/{laptop_id}/revoke",
                         data={"csrf": stranger_token}).status_code == 404
    token = form_token(laptop.get("/app/sessions").text)
    assert laptop.post(f"/app/sessions/{phone_id}/revoke", data={"csrf": token}
                       ).headers["location"] == "/app/sessions"
    assert phone.get("/app/tasks").status_code == 303
    assert laptop.get("/app/tasks").status_code == 200
    assert list(_sessions(laptop)) == [laptop_id]


def test_the_vendored_htmx_is_the_recorded_one() -> None:
    table = (WEB / "VENDORED.md").read_text()
    recorded = re.search(r"`static/htmx\.min\.js`.*?\| (2\.\d+\.\d+) \| `([0-9a-f]{64})`", table)
    assert recorded, table
    body = (WEB / "static" / "htmx.min.js").read_bytes()
    assert hashlib.sha256(body).hexdigest() == recorded.group(2)
    assert f'version:"{recorded.group(1)}"' in body.decode()
