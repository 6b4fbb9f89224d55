"""Team workspaces end to end, through the API and the web app, on SQLite and PostgreSQL.

The invite goes out as a real mail (aiosmtpd); its link opens a page that joins nobody, and only
the page's POST joins, once. Each flow is attacked: a replayed, revoked, expired or garbled link,
a role that may not act, a sixth person, a full workspace when the link is pressed, a transfer
someone else accepts, a removed member's tokens, channels, browser and live agent socket, hostile
text in the activity pages and its CSV, and deleting an account while others still share its
workspace.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
from cloud_kit import Account, Mailbox, Receiver, mail_text, parse_mail, wait_for
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from starlette.websockets import WebSocketDisconnect
from web_kit import browser_of, form_token, sign_in

from claude_notify.cloud.server.billing import service as billing
from claude_notify.cloud.server.db.models import (
    ApiToken,
    Channel,
    Task,
    User,
    Workspace,
    WorkspaceMember,
)
from claude_notify.cloud.server.relay.state import relay_of
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.teams import service
from claude_notify.cloud.server.teams.models import AuditEntry, WorkspaceInvite
from claude_notify.cloud.server.web.models import WebSession
from claude_notify.events import TaskEvent, utcnow

MakeUser = Callable[..., Account]


# --------------------------------------------------------------------------- helpers


@dataclasses.dataclass
class Mate:
    """Someone in the team: their account token (their own workspace), a token acting in the
    team, and a browser signed in by the invite, looking at the team."""

    own: Account
    team: Account
    browser: TestClient

    @property
    def email(self) -> str:
        return self.own.email

    @property
    def user_id(self) -> uuid.UUID:
        return self.own.user_id


def _address() -> str:
    return f"mate-{uuid.uuid4().hex[:8]}@example.com"


def _error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def _mails_to(box: Mailbox, address: str) -> list[str]:
    with box.lock:
        messages = list(box.messages)
    return [mail_text(m) for m in messages if address in m.rcpt_tos]


def _mailed_token(box: Mailbox, address: str, seen: int) -> str:
    """The token of the invite link mailed to ``address`` after ``seen`` mails to it."""
    wait_for(lambda: len(_mails_to(box, address)) > seen, what=f"an invite mail to {address}")
    text = _mails_to(box, address)[-1]
    link = next(w for w in text.split() if "/app/invite?token=" in w)
    return link.split("token=", 1)[1]


def _invite(client: TestClient, who: Account, email: str, role: str = "member") -> httpx.Response:
    return client.post("/v1/workspace/invites", json={"email": email, "role": role},
                       headers=who.headers)


def _invited(client: TestClient, box: Mailbox, who: Account, email: str,
             role: str = "member") -> str:
    """Invite ``email`` and return the token its mail carries."""
    seen = len(_mails_to(box, email))
    made = _invite(client, who, email, role)
    assert made.status_code == 201, made.text
    return _mailed_token(box, email, seen)


def _join(client: TestClient, token: str) -> TestClient:
    """A fresh browser pressing Join on the invite page."""
    browser = browser_of(client)
    page = browser.get("/app/invite", params={"token": token})
    assert page.status_code == 200, page.text
    joined = browser.post("/app/invite", data={"token": token})
    assert joined.status_code == 303, joined.text
    return browser


def _team_token(client: TestClient, who: Account, workspace_id: uuid.UUID) -> Account:
    made = client.post(f"/v1/workspaces/{workspace_id}/token", headers=who.headers)
    assert made.status_code == 201, made.text
    return Account(who.email, made.json()["token"], who.user_id)


def _add(client: TestClient, box: Mailbox, make_user: MakeUser, inviter: Account,
         role: str = "member") -> Mate:
    """An existing account invited into ``inviter``'s workspace as ``role``, joined."""
    own = make_user(_address())
    browser = _join(client, _invited(client, box, inviter, own.email, role))
    team = _team_token(client, own, inviter_workspace(client, inviter))
    return Mate(own, team, browser)


def inviter_workspace(client: TestClient, who: Account) -> uuid.UUID:
    found = client.get("/v1/workspace", headers=who.headers)
    assert found.status_code == 200, found.text
    return uuid.UUID(found.json()["id"])


def _roles(runtime: Runtime, workspace_id: uuid.UUID) -> dict[str, str]:
    with runtime.sessions() as session:
        return dict(session.execute(
            select(User.email, WorkspaceMember.role)
            .join(WorkspaceMember, WorkspaceMember.user_id == User.id)
            .where(WorkspaceMember.workspace_id == workspace_id)).all())


def _activity(runtime: Runtime, workspace_id: uuid.UUID) -> list[tuple[str, str, str]]:
    """(actor, action, target) of every line, oldest first."""
    with runtime.sessions() as session:
        return [(r.actor_email, r.action, r.target) for r in session.scalars(
            select(AuditEntry).where(AuditEntry.workspace_id == workspace_id)
            .order_by(AuditEntry.at, AuditEntry.action))]


def _report(client: TestClient, who: Account, machine: str = "m-1", key: str | None = None,
            session_id: str | None = None) -> str:
    """A finished task from ``who``'s machine, into the workspace their token acts in."""
    key = key or uuid.uuid4().hex
    body = TaskEvent.from_dict({"type": "finished", "source": "run", "task_id": key,
                                "machine_id": machine, "session_id": session_id,
                                "status": "success", "exit_code": 0, "command": f"make {key}",
                                "cwd": "/srv/project"}).to_dict()
    sent = client.post("/v1/events", json=body, headers=who.headers)
    assert sent.status_code == 202, sent.text
    return key


def _signed_in_owner(client: TestClient, box: Mailbox, owner: Account) -> TestClient:
    browser = browser_of(client)
    sign_in(browser, box, owner.email)
    return browser


def _h1(page: str) -> str:
    found = re.search(r"<h1>(.*?)</h1>", page, re.S)
    assert found, page
    return found.group(1).strip()


@pytest.fixture
def owner(make_user: MakeUser) -> Account:
    """The owner of a Pro workspace (their own, which is the team)."""
    return make_user(f"owner-{uuid.uuid4().hex[:8]}@example.com", plan="pro")


# --------------------------------------------------------------------------- invites


def test_the_mailed_link_shows_a_page_that_joins_nobody_and_its_post_joins_once(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime, owner: Account,
    settings: Any
) -> None:
    address = _address()
    made = _invite(client, owner, address)
    assert made.status_code == 201, made.text
    assert made.json()["email"] == address and made.json()["role"] == "member"
    token = _mailed_token(smtp_server, address, 0)
    mail = next(m for m in smtp_server.messages if address in m.rcpt_tos)
    assert "invited" in str(parse_mail(mail)["Subject"]).lower()
    assert f"{settings.public_url.rstrip('/')}/app/invite?token={token}" in mail_text(mail)
    assert owner.email in mail_text(mail)

    browser = browser_of(client)
    for _ in range(2):  # a mail scanner, then the person: nobody joins, no account is made
        page = browser.get("/app/invite", params={"token": token})
        assert page.status_code == 200 and address in page.text and "Join" in page.text
        assert address not in _roles(runtime, owner.user_id)
        with runtime.sessions() as session:
            assert session.scalar(select(User).where(User.email == address)) is None
        assert "set-cookie" not in page.headers

    joined = browser.post("/app/invite", data={"token": token})
    assert joined.status_code == 303, joined.text
    assert _roles(runtime, owner.user_id)[address] == "member"
    workspace = browser.get("/app/workspace")
    assert workspace.status_code == 200
    assert _h1(workspace.text) == owner.email  # the team, not the new account's own
    assert "you are <b>member</b>" in workspace.text
    with runtime.sessions() as session:  # the account was made, with its own workspace too
        user = session.scalar(select(User).where(User.email == address))
        assert user is not None
        own = session.get(WorkspaceMember, (user.id, user.id))
        assert own is not None and own.role == "owner"

    again = browser_of(client)
    assert again.post("/app/invite", data={"token": token}).status_code == 404  # replayed
    assert again.get("/app/invite", params={"token": token}).status_code == 404
    assert "set-cookie" not in again.post("/app/invite", data={"token": token}).headers
    assert [a for _, a, t in _activity(runtime, owner.user_id)] == [
        "member.invited", "member.joined"]


def test_an_existing_account_joins_and_keeps_its_own_workspace(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime, owner: Account,
    make_user: MakeUser
) -> None:
    mate = _add(client, smtp_server, make_user, owner, "viewer")
    assert _roles(runtime, owner.user_id)[mate.email] == "viewer"
    assert _h1(mate.browser.get("/app/workspace").text) == owner.email
    listed = client.get("/v1/workspaces", headers=mate.own.headers).json()
    assert {(w["id"], w["role"]) for w in listed} == {
        (str(mate.user_id), "owner"), (str(owner.user_id), "viewer")}
    # Their own token still acts in their own workspace; the switched one in the team.
    assert client.get("/v1/workspace", headers=mate.own.headers).json()["role"] == "owner"
    assert client.get("/v1/workspace", headers=mate.team.headers).json()["role"] == "viewer"


def test_the_link_is_only_mailed_never_shown_to_the_inviter(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime, owner: Account,
    make_user: MakeUser
) -> None:
    """Pressing Join signs the browser in as the invited address, so whoever holds the link
    holds that account: the inviter must not get it (else inviting someone's address, then
    pressing Join oneself, would take over their account)."""
    victim = make_user(_address())
    made = _invite(client, owner, victim.email)
    assert made.status_code == 201
    token = _mailed_token(smtp_server, victim.email, 0)
    assert token not in made.text and "/app/invite" not in made.text
    listed = client.get("/v1/workspace/invites", headers=owner.headers)
    assert token not in listed.text

    browser = _signed_in_owner(client, smtp_server, owner)
    page = browser.get("/app/workspace")
    other = _address()
    sent = browser.post("/app/workspace/invites",
                        data={"csrf": form_token(page.text), "email": other, "role": "member"})
    assert sent.status_code in (201, 303), sent.text
    other_token = _mailed_token(smtp_server, other, 0)
    assert other_token not in sent.text and "/app/invite?token=" not in sent.text
    assert other_token not in browser.get("/app/workspace").text


def test_revoked_expired_and_garbled_links_are_not_found(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime, owner: Account,
    make_user: MakeUser
) -> None:
    revoked_to, expired_to = _address(), _address()
    revoked = _invited(client, smtp_server, owner, revoked_to)
    invite_id = client.get("/v1/workspace/invites", headers=owner.headers).json()[0]["id"]
    stranger = make_user(_address(), plan="pro")  # another workspace's owner
    assert _error(client.delete(f"/v1/workspace/invites/{invite_id}",
                                headers=stranger.headers)) == (404, "not_found")
    assert client.get("/v1/workspace/invites", headers=stranger.headers).json() == []
    gone = client.delete(f"/v1/workspace/invites/{invite_id}", headers=owner.headers)
    assert gone.status_code == 204
    expired = _invited(client, smtp_server, owner, expired_to)
    with runtime.sessions.begin() as session:
        session.execute(update(WorkspaceInvite).where(WorkspaceInvite.email == expired_to)
                        .values(expires_at=utcnow() - timedelta(seconds=1)))

    browser = browser_of(client)
    tampered = revoked[:-3] + ("AAA" if not revoked.endswith("AAA") else "BBB")
    for token in (revoked, expired, tampered, "cni_" + "x" * 43, revoked[4:], "cni_",
                  "' OR 1=1 --", "%00", "", revoked + ".", "cni_" + "y" * 200):
        assert browser.get("/app/invite", params={"token": token}).status_code == 404, token
        answer = browser.post("/app/invite", data={"token": token})
        assert answer.status_code == 404, (token, answer.text)
        assert "set-cookie" not in answer.headers
    assert browser.get("/app/invite").status_code == 404
    assert browser.post("/app/invite").status_code == 404
    assert set(_roles(runtime, owner.user_id)) == {owner.email}
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(User).where(
            User.email.in_([revoked_to, expired_to]))) == 0
        # Nothing was marked used by the failed attempts.
        assert session.scalar(select(func.count()).select_from(WorkspaceInvite).where(
            WorkspaceInvite.accepted_at.is_not(None))) == 0
    assert client.get("/v1/workspace/invites", headers=owner.headers).json() == []


def test_who_may_invite_whom(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime, owner: Account,
    make_user: MakeUser
) -> None:
    admin = _add(client, smtp_server, make_user, owner, "admin")
    member = _add(client, smtp_server, make_user, owner, "member")
    viewer = _add(client, smtp_server, make_user, owner, "viewer")
    assert _error(_invite(client, viewer.team, _address())) == (403, "role_refused")
    assert _error(_invite(client, member.team, _address())) == (403, "role_refused")
    refused = _invite(client, admin.team, _address(), role="admin")
    assert _error(refused) == (403, "role_refused") and "owner" in refused.json()["error"][
        "message"]
    assert _error(_invite(client, owner, _address(), role="owner"))[0] == 422
    assert _error(_invite(client, owner, member.email)) == (409, "conflict")
    assert _error(_invite(client, owner, member.email.upper())) == (409, "conflict")
    assert _error(_invite(client, owner, owner.email)) == (409, "conflict")
    # A member's own (free) workspace cannot invite, even for its owner.
    free = _invite(client, member.own, _address())
    assert _error(free) == (403, "plan_refused"), free.text
    for hostile in ("not-an-email", "a@b", "<script>alert(1)</script>@example.com",
                    "victim@example.com\r\nBcc: evil@example.com", "a@example.com, b@example.com",
                    "x" * 400 + "@example.com", "@example.com"):
        answer = _invite(client, owner, hostile)
        assert answer.status_code == 422, (hostile, answer.text)
    # The admin invites a member and a viewer (there are seats for one more pending).
    ok = _invite(client, admin.team, _address(), role="viewer")
    assert ok.status_code == 201, ok.text
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(WorkspaceInvite)
                              .where(WorkspaceInvite.accepted_at.is_(None))) == 1


def test_an_inviter_sends_at_most_twenty_invites_a_day(
    client: TestClient, runtime: Runtime, owner: Account
) -> None:
    for _ in range(service.INVITES_PER_DAY):
        made = _invite(client, owner, _address())
        assert made.status_code == 201, made.text
        gone = client.delete(f"/v1/workspace/invites/{made.json()['id']}", headers=owner.headers)
        assert gone.status_code == 204
    over = _invite(client, owner, _address())
    assert over.status_code == 429, over.text
    assert "Retry-After" in over.headers
    # Yesterday's do not count.
    with runtime.sessions.begin() as session:
        session.execute(update(WorkspaceInvite).values(
            created_at=utcnow() - timedelta(days=1, seconds=5)))
    assert _invite(client, owner, _address()).status_code == 201


def test_inviting_an_address_again_sends_a_new_link_in_place_of_the_old_one(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime, owner: Account
) -> None:
    address = _address()
    first = _invited(client, smtp_server, owner, address)
    assert _invite(client, owner, address.upper()).status_code == 201
    second = _mailed_token(smtp_server, address, 1)
    assert first != second
    pending = client.get("/v1/workspace/invites", headers=owner.headers).json()
    assert [i["email"] for i in pending] == [address]  # one person, one seat
    for _ in range(3):  # owner + the one invited + 3 = 5
        assert _invite(client, owner, _address()).status_code == 201
    assert _error(_invite(client, owner, _address())) == (403, "seats_full")
    browser = browser_of(client)
    assert browser.post("/app/invite", data={"token": first}).status_code == 404
    assert browser.post("/app/invite", data={"token": second}).status_code == 303
    assert _roles(runtime, owner.user_id)[address] == "member"


def test_a_join_from_another_site_or_into_a_workspace_no_longer_pro_is_refused(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime, owner: Account
) -> None:
    address = _address()
    token = _invited(client, smtp_server, owner, address)
    browser = browser_of(client)
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Origin": "null"}):
        forged = browser.post("/app/invite", data={"token": token}, headers=headers)
        assert forged.status_code == 403, (headers, forged.text)
        assert "set-cookie" not in forged.headers
    assert address not in _roles(runtime, owner.user_id)

    with runtime.sessions.begin() as session:  # the subscription ended meanwhile
        session.execute(update(Workspace).where(Workspace.id == owner.user_id)
                        .values(plan="free"))
    refused = browser.post("/app/invite", data={"token": token})
    assert refused.status_code == 403 and "no longer on Pro" in refused.text
    assert "set-cookie" not in refused.headers
    with runtime.sessions() as session:
        assert session.scalar(select(User).where(User.email == address)) is None
    assert address not in _roles(runtime, owner.user_id)
    assert _error(_invite(client, owner, _address())) == (403, "plan_refused")


class TestAnOperatorsSignUpRules:
    """Joining makes an account only as signing in would: an invite does not get around a
    server whose operator opens accounts to some domains only."""

    @pytest.fixture
    def settings(self, settings: Any) -> Any:
        return settings.replace(web_signup_domains=("example.com",))

    def test_an_invite_to_an_outside_address_makes_no_account_but_an_existing_one_joins(
        self, client: TestClient, smtp_server: Mailbox, runtime: Runtime, owner: Account,
        make_user: MakeUser
    ) -> None:
        outsider = f"someone-{uuid.uuid4().hex[:8]}@elsewhere.example.org"
        token = _invited(client, smtp_server, owner, outsider)
        browser = browser_of(client)
        refused = browser.post("/app/invite", data={"token": token})
        assert refused.status_code == 403, refused.text
        assert "does not open an account" in refused.text
        assert "set-cookie" not in refused.headers
        with runtime.sessions() as session:
            assert session.scalar(select(User).where(User.email == outsider)) is None
            row = session.scalar(select(WorkspaceInvite).where(WorkspaceInvite.email == outsider))
            assert row is not None and row.accepted_at is None
        assert outsider not in _roles(runtime, owner.user_id)

        # The operator made the account: now the same link joins.
        existing = make_user(outsider)
        assert browser.post("/app/invite", data={"token": token}).status_code == 303
        assert _roles(runtime, owner.user_id)[existing.email] == "member"
        inside = _address()  # example.com: open
        _join(client, _invited(client, smtp_server, owner, inside))
        assert _roles(runtime, owner.user_id)[inside] == "member"


# --------------------------------------------------------------------------- seats


def test_five_seats_pending_invites_count_and_revoking_frees_one(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime, owner: Account,
    make_user: MakeUser
) -> None:
    mates = [_add(client, smtp_server, make_user, owner) for _ in range(3)]
    pending = _invite(client, owner, _address())
    assert pending.status_code == 201  # owner + 3 + 1 pending = 5
    full = _invite(client, owner, _address())
    assert _error(full) == (403, "seats_full"), full.text
    assert "at most 5 people" in full.json()["error"]["message"]
    assert client.delete(f"/v1/workspace/invites/{pending.json()['id']}",
                         headers=owner.headers).status_code == 204
    fifth = _add(client, smtp_server, make_user, owner)
    assert len(_roles(runtime, owner.user_id)) == 5
    assert client.get("/v1/workspace", headers=owner.headers).json()["members"] == 5
    sixth = _invite(client, owner, _address())
    assert _error(sixth) == (403, "seats_full")
    # The web page says so too.
    browser = _signed_in_owner(client, smtp_server, owner)
    page = browser.get("/app/workspace")
    assert "5 of 5 seats" in page.text
    refused = browser.post("/app/workspace/invites", data={
        "csrf": form_token(page.text), "email": _address(), "role": "member"})
    assert refused.status_code == 403 and "at most 5 people" in refused.text
    # Removing someone frees a seat.
    assert client.delete(f"/v1/workspace/members/{mates[0].user_id}",
                         headers=owner.headers).status_code == 204
    assert _invite(client, owner, _address()).status_code == 201
    assert fifth.email in _roles(runtime, owner.user_id)


def test_pressing_join_when_the_seats_filled_up_meanwhile_is_refused_with_nothing_written(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime, owner: Account,
    make_user: MakeUser
) -> None:
    newcomer = _address()
    token = _invited(client, smtp_server, owner, newcomer)  # owner + 1 pending
    # Meanwhile four people got in some other way (e.g. invites accepted before this one was
    # sent and counted, an operator's hand): the workspace is full.
    others = [make_user(_address()) for _ in range(4)]
    with runtime.sessions.begin() as session:
        for other in others:
            session.add(WorkspaceMember(workspace_id=owner.user_id, user_id=other.user_id,
                                        role="member", created_at=utcnow()))
    before = _activity(runtime, owner.user_id)

    browser = browser_of(client)
    assert browser.get("/app/invite", params={"token": token}).status_code == 200
    refused = browser.post("/app/invite", data={"token": token})
    assert refused.status_code == 403, refused.text
    assert "seats" in refused.text and "Not joined" in refused.text
    assert "set-cookie" not in refused.headers
    assert browser.get("/app/tasks").status_code in (302, 303, 307)  # not signed in
    with runtime.sessions() as session:
        assert session.scalar(select(User).where(User.email == newcomer)) is None
        row = session.scalar(select(WorkspaceInvite).where(WorkspaceInvite.email == newcomer))
        assert row is not None and row.accepted_at is None
    assert newcomer not in _roles(runtime, owner.user_id)
    assert _activity(runtime, owner.user_id) == before

    # A seat freed, the same link works.
    assert client.delete(f"/v1/workspace/members/{others[0].user_id}",
                         headers=owner.headers).status_code == 204
    assert browser.post("/app/invite", data={"token": token}).status_code == 303
    assert _roles(runtime, owner.user_id)[newcomer] == "member"


def test_concurrent_invites_and_joins_never_fill_more_than_five_seats(
    live_server: str, smtp_server: Mailbox, runtime: Runtime, owner: Account,
    make_user: MakeUser
) -> None:
    addresses = [_address() for _ in range(8)]
    with httpx.Client(base_url=live_server, headers=owner.headers, timeout=60) as http:
        start = threading.Barrier(len(addresses))

        def send(address: str) -> int:
            start.wait()
            return http.post("/v1/workspace/invites",
                             json={"email": address, "role": "member"}).status_code

        with ThreadPoolExecutor(max_workers=len(addresses)) as pool:
            codes = list(pool.map(send, addresses))
    assert sorted(codes) == [201] * 4 + [403] * 4, codes
    sent = [a for a, code in zip(addresses, codes, strict=True) if code == 201]
    tokens = [_mailed_token(smtp_server, a, 0) for a in sent]

    # Three people got in some other way meanwhile: one seat is left for four links.
    with runtime.sessions.begin() as session:
        for other in [make_user(_address()) for _ in range(3)]:
            session.add(WorkspaceMember(workspace_id=owner.user_id, user_id=other.user_id,
                                        role="member", created_at=utcnow()))
    start = threading.Barrier(len(tokens))

    def press(token: str) -> int:
        with httpx.Client(base_url=live_server, timeout=60) as browser:
            start.wait()
            return browser.post("/app/invite", data={"token": token}).status_code

    with ThreadPoolExecutor(max_workers=len(tokens)) as pool:
        pressed = list(pool.map(press, tokens))
    assert sorted(pressed) == [303] + [403] * 3, pressed
    roles = _roles(runtime, owner.user_id)
    assert len(roles) == 5
    assert sum(a in roles for a in sent) == 1
    with runtime.sessions() as session:  # the refused made no account
        assert session.scalar(select(func.count()).select_from(User).where(
            User.email.in_(sent))) == 1


# --------------------------------------------------------------------------- roles


def _set_role(client: TestClient, who: Account, target: uuid.UUID, role: str) -> httpx.Response:
    return client.patch(f"/v1/workspace/members/{target}", json={"role": role},
                        headers=who.headers)


def test_roles_admins_manage_members_the_owner_manages_admins_nobody_the_owner(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime, owner: Account,
    make_user: MakeUser
) -> None:
    admin = _add(client, smtp_server, make_user, owner, "admin")
    admin2 = _add(client, smtp_server, make_user, owner, "admin")
    member = _add(client, smtp_server, make_user, owner, "member")
    other = _add(client, smtp_server, make_user, owner, "member")
    team = owner.user_id

    changed = _set_role(client, admin.team, member.user_id, "viewer")
    assert changed.status_code == 200 and changed.json()["role"] == "viewer"
    # The viewer now may not report (their role is read on every request).
    body = TaskEvent.from_dict({"type": "finished", "source": "run", "task_id": "t-1",
                                "machine_id": "m-1", "status": "success", "exit_code": 0,
                                "command": "make"}).to_dict()
    assert client.post("/v1/events", json=body, headers=member.team.headers).status_code == 403
    assert _set_role(client, admin.team, member.user_id, "member").json()["role"] == "member"

    assert _error(_set_role(client, admin.team, member.user_id, "admin")) == (403, "role_refused")
    assert _error(_set_role(client, admin.team, admin2.user_id, "member")) == (403,
                                                                               "role_refused")
    assert _error(client.delete(f"/v1/workspace/members/{admin2.user_id}",
                                headers=admin.team.headers)) == (403, "role_refused")
    for who in (admin.team, owner):
        for role in ("admin", "member", "viewer", "owner"):
            assert _set_role(client, who, owner.user_id, role).status_code in (403, 422)
        assert _error(client.delete(f"/v1/workspace/members/{owner.user_id}",
                                    headers=who.headers)) == (403, "role_refused")
    assert _set_role(client, owner, member.user_id, "owner").status_code == 422
    assert _set_role(client, owner, member.user_id, "superuser").status_code == 422
    for who in (member.team, other.team):
        assert _error(_set_role(client, who, other.user_id, "viewer")) == (403, "role_refused")
        assert _error(client.delete(f"/v1/workspace/members/{other.user_id}",
                                    headers=who.headers)) == (403, "role_refused")
    # Someone else's workspace's member cannot be reached from this one.
    stranger = make_user(_address(), plan="pro")
    assert _error(_set_role(client, stranger, member.user_id, "viewer")) == (404, "not_found")
    assert _error(client.delete(f"/v1/workspace/members/{member.user_id}",
                                headers=stranger.headers)) == (404, "not_found")

    # The owner appoints and demotes admins, and removes one.
    assert _set_role(client, owner, member.user_id, "admin").json()["role"] == "admin"
    assert _set_role(client, owner, admin2.user_id, "viewer").json()["role"] == "viewer"
    assert client.delete(f"/v1/workspace/members/{member.user_id}",
                         headers=owner.headers).status_code == 204
    assert _roles(runtime, team) == {owner.email: "owner", admin.email: "admin",
                                     admin2.email: "viewer", other.email: "member"}

    # The web app's forms follow the same rules.
    page = admin.browser.get("/app/workspace")
    assert f"/app/workspace/members/{other.user_id}/role" in page.text
    assert f"/app/workspace/members/{owner.user_id}/role" not in page.text
    csrf = form_token(page.text)
    done = admin.browser.post(f"/app/workspace/members/{other.user_id}/role",
                              data={"csrf": csrf, "role": "viewer"})
    assert done.status_code == 303
    refused = admin.browser.post(f"/app/workspace/members/{other.user_id}/role",
                                 data={"csrf": csrf, "role": "admin"})
    assert refused.status_code == 403 and "only the owner" in refused.text
    refused = admin.browser.post(f"/app/workspace/members/{owner.user_id}/remove",
                                 data={"csrf": csrf})
    assert refused.status_code == 403
    assert other.browser.post(f"/app/workspace/members/{admin.user_id}/remove",
                              data={"csrf": form_token(other.browser.get(
                                  "/app/workspace").text)}).status_code == 403
    assert _roles(runtime, team)[other.email] == "viewer"
    assert _roles(runtime, team)[owner.email] == "owner"


# --------------------------------------------------------------------------- transfer


def test_transfer_only_the_offered_member_accepts_before_it_expires(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime, owner: Account,
    make_user: MakeUser
) -> None:
    heir = _add(client, smtp_server, make_user, owner, "member")
    admin = _add(client, smtp_server, make_user, owner, "admin")
    team = owner.user_id

    def offer(who: Account, email: str) -> httpx.Response:
        return client.post("/v1/workspace/transfer", json={"email": email}, headers=who.headers)

    def accept(who: Account) -> httpx.Response:
        return client.post("/v1/workspace/transfer/accept", headers=who.headers)

    assert _error(offer(admin.team, admin.email)) == (403, "role_refused")
    assert _error(offer(heir.team, heir.email)) == (403, "role_refused")
    assert _error(offer(owner, _address())) == (404, "not_found")  # not a member
    assert offer(owner, owner.email).status_code == 422
    assert _error(accept(heir.team)) == (404, "not_found")  # nothing offered yet

    offered = offer(owner, heir.email.upper())
    assert offered.status_code == 200 and offered.json()["transfer_to"] == str(heir.user_id)
    assert _error(accept(admin.team)) == (404, "not_found")
    assert _error(accept(owner)) == (404, "not_found")
    assert _error(accept(heir.own)) == (404, "not_found")  # their own workspace's token
    with runtime.sessions.begin() as session:
        session.execute(update(Workspace).where(Workspace.id == team)
                        .values(transfer_expires_at=utcnow() - timedelta(seconds=1)))
    assert _error(accept(heir.team)) == (404, "not_found")
    assert _roles(runtime, team)[owner.email] == "owner"

    assert offer(owner, heir.email).status_code == 200
    taken = accept(heir.team)
    assert taken.status_code == 200, taken.text
    assert taken.json()["role"] == "owner" and taken.json()["transfer_to"] is None
    assert _roles(runtime, team) == {owner.email: "admin", heir.email: "owner",
                                     admin.email: "admin"}
    with runtime.sessions() as session:
        payer = billing._owner(session, team)
        assert payer is not None and payer.email == heir.email
    assert _error(accept(heir.team)) == (404, "not_found")  # used
    # The old owner is an admin now: no more handing over, and the new owner's seat is safe.
    assert _error(offer(owner, admin.email)) == (403, "role_refused")
    assert _error(_set_role(client, owner, heir.user_id, "member")) == (403, "role_refused")
    assert client.get("/v1/workspace", headers=owner.headers).json()["role"] == "admin"
    assert "you are <b>owner</b>" in heir.browser.get("/app/workspace").text


def test_transfer_through_the_web_app_and_a_removed_member_cannot_take_a_stale_offer(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime, owner: Account,
    make_user: MakeUser
) -> None:
    heir = _add(client, smtp_server, make_user, owner, "member")
    browser = _signed_in_owner(client, smtp_server, owner)
    page = browser.get("/app/workspace")
    offered = browser.post("/app/workspace/transfer",
                           data={"csrf": form_token(page.text), "user_id": str(heir.user_id)})
    assert offered.status_code == 303
    shown = heir.browser.get("/app/workspace").text
    assert "Accept ownership" in shown
    # Removed before accepting, then back by a new invite: the old offer is gone with them.
    assert client.delete(f"/v1/workspace/members/{heir.user_id}",
                         headers=owner.headers).status_code == 204
    assert "Handover offered" not in browser.get("/app/workspace").text
    back = _join(client, _invited(client, smtp_server, owner, heir.email))
    page = back.get("/app/workspace")
    assert "Accept ownership" not in page.text
    stale = back.post("/app/workspace/transfer/accept", data={"csrf": form_token(page.text)})
    assert stale.status_code == 404
    assert _roles(runtime, owner.user_id)[owner.email] == "owner"


@pytest.mark.parametrize("how", ["removed", "left"])
def test_a_former_owner_out_of_the_team_gets_a_workspace_of_their_own_again(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime, owner: Account,
    make_user: MakeUser, how: str
) -> None:
    """The owner's own workspace is the one they handed over: out of it, they belong to none,
    and every page and token needs one."""
    heir = _add(client, smtp_server, make_user, owner, "member")
    browser = _signed_in_owner(client, smtp_server, owner)
    assert client.post("/v1/workspace/transfer", json={"email": heir.email},
                       headers=owner.headers).status_code == 200
    assert client.post("/v1/workspace/transfer/accept",
                       headers=heir.team.headers).status_code == 200
    if how == "removed":
        gone = client.delete(f"/v1/workspace/members/{owner.user_id}", headers=heir.team.headers)
    else:
        gone = client.post("/v1/workspace/leave", headers=owner.headers)
    assert gone.status_code == 204, gone.text
    assert client.get("/v1/workspace", headers=owner.headers).status_code == 401

    page = browser.get("/app/workspace")
    assert page.status_code == 200, page.text
    assert _h1(page.text) == owner.email and "you are <b>owner</b>" in page.text
    assert "Plan: <b>free</b>" in page.text
    assert browser.get("/app/tasks").status_code == 200
    with runtime.sessions() as session:
        mine = session.execute(select(WorkspaceMember.workspace_id, WorkspaceMember.role)
                               .where(WorkspaceMember.user_id == owner.user_id)).all()
        assert len(mine) == 1 and mine[0][1] == "owner" and mine[0][0] != owner.user_id
        team = session.get(Workspace, owner.user_id)
        assert team is not None and team.plan == "pro"  # the team keeps its plan
    assert _roles(runtime, owner.user_id) == {heir.email: "owner"}
    # They can start again: a token for the new workspace, and deleting the account works.
    made = browser.post("/app/tokens", data={"csrf": form_token(page.text), "name": "cli",
                                             "scope": ["tasks:read"]})
    assert made.status_code in (200, 201), made.text
    secret = re.search(r"cnt_[A-Za-z0-9_-]{40,}", made.text)
    assert secret, made.text
    mine_now = client.get("/v1/tasks", headers={"Authorization": f"Bearer {secret.group(0)}"})
    assert mine_now.status_code == 200 and mine_now.json()["items"] == []
    assert _delete(browser, owner.email).status_code == 200


# --------------------------------------------------------------------------- removal


@pytest.mark.parametrize("where", ["api", "web"])
def test_removing_a_member_cuts_their_tokens_channels_browser_and_live_agent_at_once(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime, owner: Account,
    make_user: MakeUser, receiver: Receiver, where: str
) -> None:
    relay = relay_of(client.app.state)  # without the removal it would idle 5 s before closing
    relay.policy = dataclasses.replace(relay.policy, idle_s=5.0, poll_s=60.0)
    admin = _add(client, smtp_server, make_user, owner, "admin")
    gone = _add(client, smtp_server, make_user, owner, "member")
    stays = _add(client, smtp_server, make_user, owner, "member")

    def channel(who: Account, **extra: Any) -> str:
        made = client.post("/v1/channels", json={
            "type": "webhook", "config": {"url": receiver.url}, **extra}, headers=who.headers)
        assert made.status_code == 201, made.text
        assert made.json()["personal"] is ("personal" not in extra)
        return str(made.json()["id"])

    theirs = channel(gone.team)  # a member's are personal
    elsewhere = client.post("/v1/channels", json={  # in their own (free) workspace
        "type": "email", "config": {"address": gone.email}}, headers=gone.own.headers)
    assert elsewhere.status_code == 201, elsewhere.text
    their_own_elsewhere = str(elsewhere.json()["id"])
    shared = channel(admin.team, personal=False)
    kept = channel(stays.team)
    task = _report(client, gone.team, machine="laptop-of-gone", session_id="tty:/dev/pts/1:1")
    agent = client.post("/v1/agents", json={"machine_id": "laptop-of-gone"},
                        headers=gone.team.headers)
    assert agent.status_code == 201, agent.text
    other_agent = client.post("/v1/agents", json={"machine_id": "laptop-of-stays"},
                              headers=stays.team.headers)
    assert other_agent.status_code == 201, other_agent.text
    assert "you are <b>member</b>" in gone.browser.get("/app/workspace").text

    with client.websocket_connect("/v1/agent", headers={
            "Authorization": f"Bearer {agent.json()['token']}"}) as ws, \
            client.websocket_connect("/v1/agent", headers={
                "Authorization": f"Bearer {other_agent.json()['token']}"}) as kept_ws:
        for socket in (ws, kept_ws):
            socket.send_json({"type": "hello", "sessions": [], "running": []})
            socket.send_json({"type": "ping"})
            assert socket.receive_json() == {"type": "pong"}
        if where == "api":
            removed = client.delete(f"/v1/workspace/members/{gone.user_id}",
                                    headers=admin.team.headers)
            assert removed.status_code == 204, removed.text
        else:
            page = admin.browser.get("/app/workspace")
            removed = admin.browser.post(f"/app/workspace/members/{gone.user_id}/remove",
                                         data={"csrf": form_token(page.text)})
            assert removed.status_code == 303, removed.text
        started = time.monotonic()
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                ws.receive_json()
        assert closed.value.code == 1008 and time.monotonic() - started < 3.0
        kept_ws.send_json({"type": "ping"})  # the others' agents are untouched
        assert kept_ws.receive_json() == {"type": "pong"}

    assert client.get("/v1/workspace", headers=gone.team.headers).status_code == 401
    assert client.get("/v1/tasks", headers=gone.team.headers).status_code == 401
    assert client.get("/v1/workspace", headers=gone.own.headers).status_code == 200
    assert client.get("/v1/workspace", headers=stays.team.headers).status_code == 200
    with runtime.sessions() as session:
        left = set(map(str, session.scalars(select(Channel.id))))
        assert theirs not in left
        assert {their_own_elsewhere, shared, kept} <= left
        # Their task stays in the team's history (it ran on the team's behalf).
        assert session.scalar(select(Task.workspace_id).where(Task.key == task)) == owner.user_id
        assert session.scalar(select(WebSession.workspace_id).where(
            WebSession.user_id == gone.user_id)) is None
    page = gone.browser.get("/app/workspace")
    assert page.status_code == 200 and _h1(page.text) == gone.email  # back to their own
    assert gone.browser.get("/app/tasks").status_code == 200
    assert task not in gone.browser.get("/app/tasks").text
    assert gone.email not in _roles(runtime, owner.user_id)
    # Another token for the team cannot be had any more.
    assert client.post(f"/v1/workspaces/{owner.user_id}/token",
                       headers=gone.own.headers).status_code == 404


def test_leaving_works_for_members_and_is_refused_to_the_owner(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime, owner: Account,
    make_user: MakeUser
) -> None:
    viewer = _add(client, smtp_server, make_user, owner, "viewer")
    member = _add(client, smtp_server, make_user, owner, "member")
    refused = client.post("/v1/workspace/leave", headers=owner.headers)
    assert _error(refused) == (409, "conflict") and "transfer" in refused.json()["error"][
        "message"]
    assert client.post("/v1/workspace/leave", headers=viewer.team.headers).status_code == 204
    assert client.get("/v1/workspace", headers=viewer.team.headers).status_code == 401
    assert _h1(viewer.browser.get("/app/workspace").text) == viewer.email

    page = member.browser.get("/app/workspace")
    left = member.browser.post("/app/workspace/leave", data={"csrf": form_token(page.text)})
    assert left.status_code == 303
    assert _h1(member.browser.get("/app/workspace").text) == member.email
    assert client.get("/v1/workspace", headers=member.team.headers).status_code == 401

    browser = _signed_in_owner(client, smtp_server, owner)
    page = browser.get("/app/workspace")
    assert "Leave this workspace" not in page.text
    refused_page = browser.post("/app/workspace/leave", data={"csrf": form_token(page.text)})
    assert refused_page.status_code == 409 and "transfer" in refused_page.text
    assert _roles(runtime, owner.user_id) == {owner.email: "owner"}
    assert [a for _, a, _ in _activity(runtime, owner.user_id)].count("member.left") == 2


# --------------------------------------------------------------------------- activity


def test_every_action_writes_one_line_and_the_log_filters_and_exports_safely(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime, owner: Account,
    make_user: MakeUser
) -> None:
    team = owner.user_id
    admin = _add(client, smtp_server, make_user, owner, "admin")
    member = _add(client, smtp_server, make_user, owner, "member")
    hostile = "=2+5@example.com"  # a valid address a spreadsheet would run as a formula
    made = _invite(client, admin.team, hostile)
    assert made.status_code == 201, made.text
    assert client.delete(f"/v1/workspace/invites/{made.json()['id']}",
                         headers=admin.team.headers).status_code == 204
    assert _set_role(client, admin.team, member.user_id, "viewer").status_code == 200
    assert client.post("/v1/workspace/transfer", json={"email": admin.email},
                       headers=owner.headers).status_code == 200
    assert client.post("/v1/workspace/transfer/accept",
                       headers=admin.team.headers).status_code == 200
    assert client.delete(f"/v1/workspace/members/{member.user_id}",
                         headers=admin.team.headers).status_code == 204
    plus = _add(client, smtp_server, make_user, admin.team, "member")
    assert client.post("/v1/workspace/leave", headers=plus.team.headers).status_code == 204

    lines = _activity(runtime, team)
    assert sorted(lines) == sorted([
        (owner.email, "member.invited", admin.email), (admin.email, "member.joined", admin.email),
        (owner.email, "member.invited", member.email),
        (member.email, "member.joined", member.email),
        (admin.email, "member.invited", hostile), (admin.email, "invite.revoked", hostile),
        (admin.email, "member.role_changed", member.email),
        (owner.email, "owner.offered", admin.email), (admin.email, "owner.accepted", admin.email),
        (admin.email, "member.removed", member.email),
        (admin.email, "member.invited", plus.email), (plus.email, "member.joined", plus.email),
        (plus.email, "member.left", plus.email),
    ])

    def get(**params: str) -> list[dict[str, Any]]:
        answer = client.get("/v1/workspace/activity", params=params, headers=owner.headers)
        assert answer.status_code == 200, answer.text
        rows: list[dict[str, Any]] = answer.json()
        return rows

    assert len(get()) == 13
    assert {r["action"] for r in get(action="member.")} == {
        "member.invited", "member.joined", "member.role_changed", "member.removed",
        "member.left"}
    assert [r["action"] for r in get(action="owner.")] == ["owner.accepted", "owner.offered"]
    assert {r["actor"] for r in get(actor=owner.email.upper())} == {owner.email}
    assert len(get(actor=owner.email)) == 3
    assert [r["target"] for r in get(action="invite.", actor=admin.email)] == [hostile]
    assert get(action="%") == [] and get(action="_") == []
    assert get(actor="%") == []
    role_changed = get(action="member.role")[0]
    assert role_changed["detail"] == {"role": "viewer", "was": "member"}
    # Members and viewers do not read the log.
    joined = _add(client, smtp_server, make_user, admin.team, "member")
    assert _error(client.get("/v1/workspace/activity",
                             headers=joined.team.headers)) == (403, "role_refused")
    assert joined.browser.get("/app/workspace/activity").status_code == 403
    assert joined.browser.get("/app/workspace/activity.csv").status_code == 403

    # Hostile values: a formula in every column a person can fill, markup in the pages.
    with runtime.sessions.begin() as session:
        session.add(AuditEntry(workspace_id=team, actor_id=None, actor_email="@SUM(1+1)*cmd",
                               action="member.invited", target="-2+3+cmd|' /C calc'!A0",
                               detail={"role": "+1"}, at=utcnow()))
        session.add(AuditEntry(workspace_id=team, actor_id=None,
                               actor_email="<script>alert('actor')</script>",
                               action="member.invited",
                               target="<script>alert('target')</script>@example.com",
                               detail={"role": "<img src=x onerror=alert(1)>"}, at=utcnow()))
        session.execute(update(User).where(User.id == joined.user_id)
                        .values(email="<script>alert('member')</script>@example.com"))
        session.execute(update(Workspace).where(Workspace.id == team)
                        .values(name="<script>alert('name')</script>"))

    api_csv = client.get("/v1/workspace/activity", params={"format": "csv"},
                         headers=owner.headers)
    admin_browser = admin.browser
    web_csv = admin_browser.get("/app/workspace/activity.csv")
    for answer in (api_csv, web_csv):
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/csv")
        assert "attachment" in answer.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(answer.text)))
        assert rows[0] == ["at", "actor", "action", "target", "detail"]
        assert len(rows) == 1 + 17
        for row in rows[1:]:
            for cell in row:
                assert cell[:1] not in ("=", "+", "-", "@"), row
        assert ["'@SUM(1+1)*cmd", "member.invited", "'-2+3+cmd|' /C calc'!A0", "role=+1"] in [
            r[1:] for r in rows]
        assert any(r[3] == "'" + hostile for r in rows)
    filtered = admin_browser.get("/app/workspace/activity.csv",
                                 params={"action": "owner.", "actor": owner.email})
    assert [r[2] for r in list(csv.reader(io.StringIO(filtered.text)))[1:]] == ["owner.offered"]

    for page in (admin_browser.get("/app/workspace/activity"), admin_browser.get(
            "/app/workspace/activity", params={"actor": "<script>alert(1)</script>"}),
            admin_browser.get("/app/workspace")):
        assert page.status_code == 200, page.text
        assert "<script>" not in page.text and "<img" not in page.text
    assert "&lt;script&gt;alert(" in admin_browser.get("/app/workspace/activity").text
    assert "&lt;script&gt;alert(" in admin_browser.get("/app/workspace").text
    web = admin_browser.get("/app/workspace/activity", params={"action": "owner."})
    assert "owner.offered" in web.text and "member.joined" not in web.text


# --------------------------------------------------------------------------- data protection


def _delete(browser: TestClient, email: str) -> httpx.Response:
    page = browser.get("/app/account")
    assert page.status_code == 200
    return browser.post("/app/account/delete",
                        data={"csrf": form_token(page.text), "confirm": email})


def test_export_and_delete_work_per_person_in_a_team(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime, owner: Account,
    make_user: MakeUser, receiver: Receiver
) -> None:
    team = owner.user_id
    heir = _add(client, smtp_server, make_user, owner, "admin")
    member = _add(client, smtp_server, make_user, owner, "member")
    owner_task = _report(client, owner)
    heir_task = _report(client, heir.team)
    member_team_task = _report(client, member.team)
    member_own_task = _report(client, member.own)
    shared = client.post("/v1/channels", json={"type": "webhook", "config": {"url": receiver.url},
                                               "personal": False}, headers=heir.team.headers)
    assert shared.status_code == 201, shared.text

    exported = member.browser.get("/app/account/export")
    assert exported.status_code == 200
    data = exported.json()
    assert {(w["id"], w["role"]) for w in data["workspaces"]} == {
        (str(member.user_id), "owner"), (str(team), "member")}
    assert {t["task_id"] for t in data["tasks"]} == {member_team_task, member_own_task}
    assert owner_task not in exported.text and heir_task not in exported.text
    assert heir.email not in exported.text

    owner_browser = _signed_in_owner(client, smtp_server, owner)
    refused = _delete(owner_browser, owner.email)
    assert refused.status_code == 409, refused.text
    assert "transfer its ownership" in refused.text
    with runtime.sessions() as session:
        assert session.get(User, owner.user_id) is not None

    assert client.post("/v1/workspace/transfer", json={"email": heir.email},
                       headers=owner.headers).status_code == 200
    assert client.post("/v1/workspace/transfer/accept",
                       headers=heir.team.headers).status_code == 200
    deleted = _delete(owner_browser, owner.email)
    assert deleted.status_code == 200 and "deleted" in deleted.text
    with runtime.sessions() as session:
        assert session.get(User, owner.user_id) is None
        assert session.get(Workspace, team) is not None
        keys = set(session.scalars(select(Task.key).where(Task.workspace_id == team)))
        assert keys == {heir_task, member_team_task}
        assert str(shared.json()["id"]) in set(map(str, session.scalars(select(Channel.id))))
    assert _roles(runtime, team) == {heir.email: "owner", member.email: "member"}
    assert client.get("/v1/workspace", headers=heir.team.headers).json()["members"] == 2

    # A member deleting themself takes their tasks out of the team and nothing of the others'.
    gone = _delete(member.browser, member.email)
    assert gone.status_code == 200, gone.text
    with runtime.sessions() as session:
        assert set(session.scalars(select(Task.key).where(Task.workspace_id == team))) == {
            heir_task}
        assert session.get(Workspace, team) is not None
        assert session.scalar(select(func.count()).select_from(ApiToken).where(
            ApiToken.user_id == member.user_id)) == 0
    assert _roles(runtime, team) == {heir.email: "owner"}
    assert client.get("/v1/tasks", headers=heir.team.headers).status_code == 200
    assert client.get("/v1/workspace", headers=member.team.headers).status_code == 401


def test_a_shared_channel_stays_with_the_team_when_the_member_who_added_it_deletes_themself(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime, owner: Account,
    make_user: MakeUser, receiver: Receiver
) -> None:
    admin = _add(client, smtp_server, make_user, owner, "admin")
    shared = client.post("/v1/channels", json={
        "type": "webhook", "config": {"url": receiver.url}, "personal": False},
        headers=admin.team.headers)
    assert shared.status_code == 201, shared.text
    assert _delete(admin.browser, admin.email).status_code == 200
    listed = client.get("/v1/channels", headers=owner.headers)
    assert shared.json()["id"] in {c["id"] for c in listed.json()}, listed.text
    log = client.get("/v1/workspace/activity", headers=owner.headers).json()
    assert admin.email not in str(log) and any(  # what they did stays, not who they were
        a["action"] == "channel.created" and a["actor"] == "(a deleted account)" for a in log)
