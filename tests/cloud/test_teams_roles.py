"""The role matrix and workspace isolation of team workspaces (#19), through the real app, its
worker and a real SMTP server, on SQLite and PostgreSQL.

* :data:`~claude_notify.cloud.server.teams.roles.ROLES` and the app agree route for route, and
  nothing that needs a role answers anyone without credentials.
* In a Pro team of an owner, an admin, a member and a viewer (invited by the API, joined through
  the invite link's ``POST``), every ``/v1`` route and every ``/app`` page refuses exactly the
  roles below the table's, for each role.
* Two teams see none of each other's rows on any list, and no detail route tells another
  team's id from an id nobody has; within a team, a personal channel and its deliveries are
  its owner's alone, while shared channels and all tasks are everyone's.

One server per database for the module (its tests build teams of their own; each team's people
have fresh addresses), so a test's rows are told apart by the ids and markers it made.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import quote

import pytest
from cloud_kit import Account, Mailbox, register_agent, wait_for
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select
from teams_kit import invite_secret
from web_kit import browser_of, form_token, sign_in

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.app import create_app
from claude_notify.cloud.server.db.models import ROLE_RANK, ApiToken, Delivery, Role
from claude_notify.cloud.server.logcrypt import new_key
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.cloud.server.teams import roles
from claude_notify.cloud.server.web.models import WebIdentity, WebSession
from claude_notify.events import TaskEvent

ORDER = (Role.VIEWER, Role.MEMBER, Role.ADMIN, Role.OWNER)
Answer = Any
"""An answer of the TestClient (its response type is the httpx it vendors)."""


@dataclass
class Server:
    client: TestClient
    runtime: Runtime
    box: Mailbox

    def make_user(self, plan: str = "free") -> Account:
        address = f"u-{uuid.uuid4().hex[:10]}@example.com"
        with self.runtime.sessions.begin() as db:
            user, token = auth.create_user(db, address, plan=plan)
            return Account(user.email, token.secret, user.id)


@pytest.fixture(scope="module")
def server(module_db_url: str, module_smtp: Mailbox) -> Iterator[Server]:
    """The app (its worker running) on one database for the whole module."""
    settings = Settings(
        database_url=module_db_url, auto_migrate=False, smtp_host=module_smtp.host,
        smtp_port=module_smtp.port, smtp_ca_file=module_smtp.ca_file,
        smtp_from="claude-notify <noreply@example.com>", webhook_allow_private=True,
        retry_delays_s=(0.05, 0.1, 0.2), max_attempts=4, worker_poll_s=0.05, lease_s=5.0,
        log_keys=(new_key("k1"),),
        login_per_ip_per_hour=1000,  # every browser here signs in from the one test client
    ).validate()
    runtime = Runtime.build(settings)
    try:
        with TestClient(create_app(runtime=runtime)) as client:
            yield Server(client, runtime, module_smtp)
    finally:
        runtime.close()


# --------------------------------------------------------------------------- a team


@dataclass
class Person:
    role: str
    account: Account
    """Their own account and its token (acting in their own workspace)."""
    token: str
    """Their token acting in the team's workspace."""
    browser: TestClient
    """Signed in, looking at the team's workspace."""
    csrf: str

    @property
    def email(self) -> str:
        return self.account.email

    @property
    def user_id(self) -> uuid.UUID:
        return self.account.user_id

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Team:
    workspace_id: uuid.UUID
    people: dict[str, Person] = field(default_factory=dict)

    def __getitem__(self, role: str) -> Person:
        return self.people[role]


def _mails_to(box: Mailbox, address: str) -> int:
    return sum(address in m.rcpt_tos for m in box.messages)


def look_at(srv: Server, email: str, workspace_id: uuid.UUID) -> tuple[TestClient, str]:
    """A browser signed in as ``email`` (by the mailed link), switched to ``workspace_id``."""
    b = browser_of(srv.client)
    sign_in(b, srv.box, email)
    csrf = form_token(b.get("/app/workspace").text)
    switched = b.post("/app/workspace/switch",
                      data={"csrf": csrf, "workspace_id": str(workspace_id)})
    assert (switched.status_code, switched.headers["location"]) == (303, "/app/tasks")
    return b, csrf


def make_team(srv: Server) -> Team:
    """A Pro workspace (its owner's own) with an admin, a member and a viewer who joined by the
    invite link; each person has a token acting in it and a browser looking at it."""
    client = srv.client
    owner = srv.make_user(plan="pro")
    team = Team(owner.user_id)
    joined: dict[str, Account] = {Role.OWNER: owner}
    role: str
    for role in (Role.ADMIN, Role.MEMBER, Role.VIEWER):
        person = srv.make_user()  # free: the team's plan is the workspace's, not theirs
        made = client.post("/v1/workspace/invites", json={"email": person.email, "role": role},
                           headers=owner.headers)
        assert made.status_code == 201, made.text
        secret = invite_secret(client, person.email)
        joining = browser_of(client)
        assert joining.post("/app/invite", data={"token": secret}).status_code == 303
        joined[role] = person
    for role, account in joined.items():
        if role == Role.OWNER:
            token = account.token  # the owner's own workspace is the team's
        else:
            issued = client.post(f"/v1/workspaces/{team.workspace_id}/token",
                                 headers=account.headers)
            assert issued.status_code == 201, issued.text
            token = issued.json()["token"]
        seen = client.get("/v1/workspace", headers={"Authorization": f"Bearer {token}"}).json()
        assert (seen["id"], seen["role"], seen["plan"]) == (str(team.workspace_id), role, "pro")
        # the invite's mail first: sign_in reads the newest mail to the address
        if role != Role.OWNER:
            wait_for(partial(_mails_to, srv.box, account.email), what="the invite's mail")
        b, csrf = look_at(srv, account.email, team.workspace_id)
        team.people[role] = Person(role, account, token, b, csrf)
    return team


def _event(**fields: Any) -> dict[str, Any]:
    return TaskEvent.from_dict({"type": "finished", "source": "run", "machine_id": "m-1",
                                "task_id": uuid.uuid4().hex, "status": "failure",
                                "exit_code": 2, "command": "make test", **fields}).to_dict()


# --------------------------------------------------------------------------- the table


def _app_routes(app: Any) -> set[str]:
    return {roles.key(method, prefix + route.path)
            for prefix, route in roles.walk(app.router.routes) if isinstance(route, APIRoute)
            for method in route.methods or ()}


def _guarded(prefix: str) -> list[str]:
    return [k for k, need in roles.ROLES.items()
            if need != roles.PUBLIC and k.split(" ", 1)[1].startswith(prefix)]


def _path(route_key: str, fill: dict[str, str] | None = None) -> tuple[str, str]:
    """``METHOD``, and the path with its parameters from ``fill`` (else ids nobody has)."""
    method, path = route_key.split(" ", 1)
    fill = fill or {}
    return method, re.sub(r"\{(\w+)\}", lambda m: fill.get(m.group(1), str(uuid.uuid4())), path)


SIGNED: dict[str, tuple[int, ...]] = {"GET /app": (303,), "GET /app/": (303,)}
"""PUBLIC routes that still turn an anonymous caller away: the landing page sends a visitor to
sign in. Every other PUBLIC route answers a caller without credentials as itself (a form's
422, a link's 404, a webhook this server has not enabled: 404), never a 401 nor a redirect to
the sign-in page."""


def test_the_role_table_and_the_app_name_the_same_routes(server: Server) -> None:
    routes = _app_routes(server.client.app)
    assert routes, "walk found no routes"
    assert sorted(routes - set(roles.ROLES)) == [] == roles.missing(server.client.app)
    assert sorted(set(roles.ROLES) - routes) == []  # no stale entry
    assert set(roles.ROLES.values()) <= {roles.PUBLIC, *ROLE_RANK}
    assert len(_guarded("/v1/")) >= 40 and len(_guarded("/app/")) >= 40


def test_nothing_that_needs_a_role_answers_without_credentials(server: Server) -> None:
    anonymous = browser_of(server.client)
    for route_key in sorted(roles.ROLES):
        method, path = _path(route_key)
        answer = anonymous.request(method, path, json={} if method != "GET" else None)
        location = answer.headers.get("location", "")
        if roles.ROLES[route_key] == roles.PUBLIC:
            if route_key in SIGNED:
                assert answer.status_code in SIGNED[route_key], (route_key, answer.text)
                continue
            assert answer.status_code != 401, route_key
            assert not location.startswith("/app/signin"), route_key
            assert answer.status_code < 500, (route_key, answer.text)
        elif path.startswith("/v1/"):
            assert answer.status_code == 401, (route_key, answer.text)
            assert answer.json()["error"]["code"] == "unauthorized"
        else:
            assert answer.status_code == 303 and location.startswith("/app/signin"), route_key


# --------------------------------------------------------------------------- the API matrix


def _api_body(route_key: str) -> dict[str, Any]:
    """A minimal body that does what the route does (for ids nobody has, nothing)."""
    return {
        "POST /v1/events": _event(command="matrix event"),
        "POST /v1/commands": {"session_id": "s-nobody", "command": "true"},
        "POST /v1/tasks": {"cmd": "matrix task"},
        "PATCH /v1/account": {"timezone": "UTC"},
        "POST /v1/channels": {"type": "webhook", "config": {"url": "https://hooks.example.com/m"},
                              "personal": True},
        "PATCH /v1/channels/{channel_id}": {"enabled": False},
        "POST /v1/channels/{channel_id}/verify": {"code": "000000"},
        "PUT /v1/channels/{channel_id}/template": {"template": "{{ command }}"},
        "POST /v1/templates/preview": {"template": "{{ command }}"},
        "PUT /v1/tasks/{task_id}/log/digest": {"sha256": "0" * 64, "bytes": 0},
        "POST /v1/agents": {"machine_id": f"machine-{uuid.uuid4().hex[:8]}"},
        "POST /v1/workspace/invites": {"email": f"guest-{uuid.uuid4().hex[:8]}@example.com",
                                       "role": "viewer"},
        "PATCH /v1/workspace/members/{user_id}": {"role": "viewer"},
        "POST /v1/workspace/transfer": {"email": "nobody@example.com"},
    }.get(route_key, {})


ROW_RULES: dict[tuple[str, str], str] = {}
"""Refusals by the row rather than the role, answered as role refusals (none: the one owner's
leaving before a handover is a 409 ``conflict``, not a role refusal)."""
LAST = ("POST /v1/workspace/leave", "POST /app/workspace/leave")
"""Routes that take the person out of the team: swept after every other."""


def _refused(answer: Answer) -> bool:
    return bool(answer.status_code == 403 and answer.json()["error"]["code"] == "role_refused")


def test_every_api_route_refuses_exactly_the_roles_below_its_own(server: Server) -> None:
    team = make_team(server)
    client = server.client
    routes = sorted(_guarded("/v1/"), key=lambda k: (k in LAST, k))
    assert "POST /v1/events" in routes and "POST /v1/commands" in routes
    for route_key in routes:
        need = roles.ROLES[route_key]
        for role in ORDER:
            person = team[role]
            method, path = _path(route_key)
            body = _api_body(route_key)
            answer = client.request(method, path, headers=person.headers,
                                    json=body if method != "GET" else None)
            assert answer.status_code < 500, (route_key, role, answer.text)
            if ROLE_RANK[role] < ROLE_RANK[need]:
                assert _refused(answer), (route_key, role, answer.status_code, answer.text)
                if route_key == "POST /v1/events":  # refused before anything was recorded
                    assert client.get(f"/v1/tasks/{body['task_id']}",
                                      headers=team[Role.OWNER].headers).status_code == 404
            elif (route_key, role) in ROW_RULES:
                assert _refused(answer) and ROW_RULES[route_key, role] in answer.text
            else:
                assert not _refused(answer), (route_key, role, answer.text)
                if route_key == "POST /v1/workspace/invites":  # give the seat back
                    assert answer.status_code == 201, answer.text
                    assert client.delete(f"/v1/workspace/invites/{answer.json()['id']}",
                                         headers=team[Role.OWNER].headers).status_code == 204
    # the sweep's last route took everyone but the owner out of the team
    assert [m["role"] for m in client.get("/v1/workspace/members",
                                          headers=team[Role.OWNER].headers).json()] == ["owner"]


# --------------------------------------------------------------------------- the web matrix


def _page_refused(answer: Answer) -> bool:
    return answer.status_code == 403 and "This form was refused: this needs" in answer.text


def _form(route_key: str, csrf: str) -> dict[str, Any]:
    fields: dict[str, dict[str, Any]] = {
        "POST /app/tokens": {"name": "matrix", "scope": ["tasks:read"]},
        "POST /app/channels": {"type": "webhook", "target": "https://hooks.example.com/w",
                               "on": ["finished"]},
        "POST /app/workspace/invites": {"email": f"guest-{uuid.uuid4().hex[:8]}@example.com",
                                        "role": "viewer"},
        "POST /app/workspace/switch": {"workspace_id": str(uuid.uuid4())},
        "POST /app/workspace/members/{user_id}/role": {"role": "viewer"},
        "POST /app/workspace/transfer": {"user_id": str(uuid.uuid4())},
    }
    return {"csrf": csrf, **fields.get(route_key, {})}


def _revoke_invites(srv: Server, team: Team) -> None:
    owner = team[Role.OWNER]
    for row in srv.client.get("/v1/workspace/invites", headers=owner.headers).json():
        assert srv.client.delete(f"/v1/workspace/invites/{row['id']}",
                                 headers=owner.headers).status_code == 204


def test_every_page_refuses_exactly_the_roles_below_its_own(server: Server) -> None:
    team = make_team(server)
    routes = sorted(_guarded("/app/"), key=lambda k: (k in LAST, k == "POST /app/signout", k))
    for route_key in routes:
        need = roles.ROLES[route_key]
        if route_key in LAST:  # signed out by the sweep's previous route: sign in again
            for role in ORDER:
                person = team[role]
                person.browser, person.csrf = look_at(server, person.email, team.workspace_id)
        for role in ORDER:
            person = team[role]
            method, path = _path(route_key)
            if method == "GET":
                answer = person.browser.get(path)
            else:
                answer = person.browser.post(path, data=_form(route_key, person.csrf))
            assert answer.status_code < 500, (route_key, role, answer.text)
            if ROLE_RANK[role] < ROLE_RANK[need]:
                assert _page_refused(answer), (route_key, role, answer.status_code)
            else:
                assert not _page_refused(answer), (route_key, role)
                assert "Refused" not in answer.text.split("</title>")[0], (route_key, role)
                if route_key == "POST /app/workspace/invites":  # give the seat back
                    assert answer.status_code == 201, answer.text
                    _revoke_invites(server, team)
    members = server.client.get("/v1/workspace/members", headers=team[Role.OWNER].headers)
    assert [m["role"] for m in members.json()] == ["owner"]  # the others left last


# --------------------------------------------------------------------------- isolation


@dataclass
class Rows:
    """What one team made, and the ids of it that another team must never reach."""

    team: Team
    mark: str
    """In every name, command and log line the team wrote."""
    tasks: dict[str, str] = field(default_factory=dict)
    """Who reported it (a role) → the task's key."""
    shared: str = ""
    personal: dict[str, str] = field(default_factory=dict)
    """Whose (a role) → their personal channel's id."""
    deliveries: dict[str, list[str]] = field(default_factory=dict)
    """Channel id → the ids of the deliveries to it."""
    fill: dict[str, list[str]] = field(default_factory=dict)
    """Every path parameter of the app → this team's ids of its kind."""

    def secrets(self) -> list[str]:
        return [self.mark, str(self.team.workspace_id),
                *(p.email for p in self.team.people.values()),
                *(str(p.user_id) for p in self.team.people.values()),
                *(v for values in self.fill.values() for v in values)]


def _closed_port_url(path: str) -> str:
    from cloud_kit import free_port

    return f"http://127.0.0.1:{free_port()}/{path}"  # nobody listens: every delivery dies


def fill_team(srv: Server, team: Team) -> Rows:
    """Tasks (with a log), a shared channel and two personal ones, their deliveries (dead
    letters: their ids show on the deliveries page), a relayed command, a pending invite, an
    approval, and the activity all that wrote."""
    client, owner, admin, member = srv.client, team[Role.OWNER], team[Role.ADMIN], team[Role.MEMBER]
    rows = Rows(team, f"mark{uuid.uuid4().hex[:12]}")
    mark = rows.mark

    def channel(person: Person, what: str, **extra: Any) -> str:
        made = client.post("/v1/channels", headers=person.headers, json={
            "type": "webhook", "name": f"{mark}-{what}", "rules": {"on": ["finished"]},
            "config": {"url": _closed_port_url(what)}, **extra})
        assert made.status_code == 201, made.text
        assert made.json()["personal"] is (what != "shared")
        return str(made.json()["id"])

    rows.shared = channel(owner, "shared")
    rows.personal = {Role.MEMBER: channel(member, "member-personal"),  # a member's default
                     Role.ADMIN: channel(admin, "admin-personal", personal=True)}
    machine = f"machine-{mark}"
    register_agent(client, Account(member.email, member.token, member.user_id), machine)
    for person in (owner, admin, member, team[Role.VIEWER]):
        key = f"{mark}-{person.role}-task"
        sent = client.post("/v1/events", headers=person.headers, json=_event(
            task_id=key, command=f"{mark} {person.role} make", session_id=f"s-{mark}-{person.role}",
            machine_id=machine if person is member else "m-1", tail=f"{mark} tail\n",
            cwd="/srv"))
        if person.role == Role.VIEWER:
            assert sent.status_code == 403  # a viewer's machines report nothing
            continue
        assert sent.status_code == 202, sent.text
        rows.tasks[person.role] = key
    logged = client.post("/v1/tasks", json={"cmd": f"{mark} logged"}, headers=member.headers)
    rows.tasks["log"] = logged.json()["task_id"]
    appended = client.post(f"/v1/tasks/{quote(rows.tasks['log'], safe='')}/log",
                           content=f"{mark} log line\n".encode(),
                           headers={**member.headers, "content-type": "application/octet-stream"})
    assert appended.status_code == 200, appended.text
    command = client.post("/v1/commands", headers=member.headers,
                          json={"session_id": f"s-{mark}-member", "command": f"echo {mark}"})
    assert command.status_code == 202, command.text
    invited = client.post("/v1/workspace/invites", headers=owner.headers,
                          json={"email": f"{mark}-pending@example.com"})
    assert invited.status_code == 201, invited.text

    from datetime import timedelta

    from claude_notify.cloud.server.relay.models import Approval
    from claude_notify.events import utcnow

    approval = uuid.uuid4()
    with srv.runtime.sessions.begin() as db:
        db.add(Approval(id=approval, user_id=member.user_id, machine_id=machine,
                        session_id=f"s-{mark}-member", tool_name="Bash", digest="0" * 64,
                        display=f"{mark} deploy", state="pending",
                        expires_at=utcnow() + timedelta(minutes=30)))
        db.add(WebIdentity(provider="github", subject=mark, user_id=member.user_id))

    def settled() -> bool:
        with srv.runtime.sessions() as db:
            states = db.execute(select(Delivery.channel_id, Delivery.status).where(
                Delivery.workspace_id == team.workspace_id, Delivery.kind == "event")).all()
        return len(states) == 5 and all(s == "dead" for _, s in states)

    wait_for(settled, what="the team's deliveries to die")  # shared x3, personal x2
    with srv.runtime.sessions() as db:
        for channel_id, delivery_id in db.execute(select(Delivery.channel_id, Delivery.id).where(
                Delivery.workspace_id == team.workspace_id, Delivery.kind == "event")):
            rows.deliveries.setdefault(str(channel_id), []).append(str(delivery_id))
        ids = {
            "session_id": db.scalars(select(WebSession.id).where(
                WebSession.user_id == member.user_id)).all(),
            "token_id": db.scalars(select(ApiToken.id).where(
                ApiToken.user_id == member.user_id,
                ApiToken.workspace_id == team.workspace_id)).all(),
            "identity_id": db.scalars(select(WebIdentity.id).where(
                WebIdentity.user_id == member.user_id)).all(),
        }
    assert sorted(map(len, rows.deliveries.values())) == [1, 1, 3]
    keys = list(rows.tasks.values())
    rows.fill = {
        "task_id": keys, "key": keys, "channel_id": [rows.shared, *rows.personal.values()],
        "notification_id": [d for ds in rows.deliveries.values() for d in ds],
        "delivery_id": [d for ds in rows.deliveries.values() for d in ds],
        "workspace_id": [str(team.workspace_id)],
        "user_id": [str(p.user_id) for p in team.people.values()],
        "invite_id": [invited.json()["id"]], "command_id": [command.json()["id"]],
        "approval_id": [str(approval)],
        **{name: [str(i) for i in found] for name, found in ids.items()},
    }
    assert all(rows.fill.values()), rows.fill
    return rows


@pytest.fixture(scope="module")
def two_teams(server: Server) -> tuple[Rows, Rows]:
    return fill_team(server, make_team(server)), fill_team(server, make_team(server))


def _lists(prefix: str) -> list[str]:
    """Every guarded GET route of ``prefix`` without an id in its path, with the variants of
    a query that change what is read."""
    found = [k.split(" ", 1)[1] for k in _guarded(prefix)
             if k.startswith("GET ") and "{" not in k]  # /app/billing/success: 404, billing off
    extra = {"/v1/": ["/v1/workspace/activity?format=csv", "/v1/notifications?status=dead"],
             "/app/": ["/app/deliveries?status=dead"]}[prefix]
    return [*found, *extra]


def _answer(person: Person, method: str, path: str, route_key: str) -> Answer:
    if path.startswith("/v1/"):
        return person.browser.request(method, path, headers=person.headers,
                                      json=_api_body(route_key) if method != "GET" else None)
    if method == "GET":
        return person.browser.get(path)
    return person.browser.post(path, data=_form(route_key, person.csrf))


def _same(one: Answer, other: Answer) -> bool:
    """Whether two answers say the same (an id in another team is one nobody has)."""
    if one.status_code != other.status_code:
        return False
    if one.headers.get("content-type", "").startswith("application/json"):
        return bool(one.json() == other.json())
    title = re.compile(r"<h1>(.*?)</h1>")
    return [*title.findall(one.text)] == [*title.findall(other.text)]


def test_no_list_of_one_team_shows_another_teams_rows(
    server: Server, two_teams: tuple[Rows, Rows]
) -> None:
    for mine, theirs in (two_teams, two_teams[::-1]):
        secrets = theirs.secrets()
        for prefix in ("/v1/", "/app/"):
            paths = _lists(prefix)
            assert len(paths) >= 10, paths
            for role in ORDER:
                person = mine.team[role]
                seen_mine = 0
                for path in paths:
                    answer = _answer(person, "GET", path, f"GET {path}")
                    assert answer.status_code in (200, 403, 404 if path == "/app/billing/success"
                                                  else 200), (path, role, answer.status_code)
                    leaked = [s for s in secrets if s in answer.text]
                    assert not leaked, (path, role, leaked)
                    seen_mine += mine.mark in answer.text
                assert seen_mine >= 3, (prefix, role)  # the lists are not simply empty


def test_no_route_tells_another_teams_id_from_one_nobody_has(
    server: Server, two_teams: tuple[Rows, Rows]
) -> None:
    """Team B's people, each role, are given team A's real ids in every path that takes an id
    (API and web, reads and changes): the answer is the one for an id nobody has (a 404 for a
    role the route lets in, the role's refusal for one it does not), and A's rows stay."""
    theirs, mine = two_teams
    routes = [k for k in (*_guarded("/v1/"), *_guarded("/app/")) if "{" in k]
    assert len(routes) >= 35
    for route_key in routes:
        params = re.findall(r"\{(\w+)\}", route_key)
        assert all(p in theirs.fill for p in params), route_key  # a new kind of id: add it
        _, nobody = _path(route_key)
        for role in ORDER:
            person = mine.team[role]
            unknown = _answer(person, route_key.split(" ")[0], nobody, route_key)
            for value in sorted({v for p in params for v in theirs.fill[p]}):
                method, path = _path(route_key, dict.fromkeys(params, value))
                answer = _answer(person, method, path, route_key)
                assert _same(answer, unknown), (route_key, role, answer.status_code,
                                                unknown.status_code)
                if ROLE_RANK[role] >= ROLE_RANK[roles.ROLES[route_key]]:
                    assert answer.status_code == 404, (route_key, role, answer.text)
    for role in ORDER:  # nor may a browser look at A's workspace
        person = mine.team[role]
        switched = person.browser.post("/app/workspace/switch", data={
            "csrf": person.csrf, "workspace_id": str(theirs.team.workspace_id)})
        assert switched.status_code == 404, role
    for rows in two_teams:  # nothing the sweep sent reached them
        owner = rows.team[Role.OWNER]
        listed = server.client.get("/v1/channels", headers=owner.headers).json()
        assert rows.shared in {c["id"] for c in listed}
        assert len(server.client.get("/v1/workspace/members", headers=owner.headers).json()) == 4
        assert len(server.client.get("/v1/workspace/invites", headers=owner.headers).json()) == 1
        for key in rows.tasks.values():
            assert server.client.get(f"/v1/tasks/{quote(key, safe='')}",
                                     headers=owner.headers).status_code == 200


def test_a_personal_channel_is_its_owners_alone_and_the_rest_is_everyones(
    server: Server, two_teams: tuple[Rows, Rows]
) -> None:
    """In one team: another member's personal channel and the deliveries to it are not found on
    any list or page (API and web), as an id nobody has; shared channels (for members up) and
    every task (for everyone, viewers included) are there for all."""
    rows = two_teams[0]
    team = rows.team
    shared_deliveries = rows.deliveries[rows.shared]
    for role in ORDER:
        person = team[role]
        hidden = {whose: cid for whose, cid in rows.personal.items() if whose != role}
        own = rows.personal.get(role)
        secret = [*hidden.values(), *(f"{rows.mark}-{w}-personal" for w in hidden),
                  *(d for cid in hidden.values() for d in rows.deliveries[cid])]
        reads_channels = ROLE_RANK[role] >= ROLE_RANK[Role.MEMBER]
        # every page and list a person reads, the shared rows' detail pages included
        reads = [*_lists("/v1/"), *_lists("/app/"),
                 *(f"/v1/tasks/{quote(k, safe='')}" for k in rows.tasks.values()),
                 *(f"/app/t/{quote(k, safe='')}" for k in rows.tasks.values()),
                 *(f"/v1/notifications/{d}" for d in shared_deliveries),
                 f"/v1/tasks/{quote(rows.tasks['log'], safe='')}/log",
                 f"/app/t/{quote(rows.tasks['log'], safe='')}/log",
                 f"/v1/channels/{rows.shared}", f"/app/channels/{rows.shared}"]
        texts = {path: _answer(person, "GET", path, f"GET {path}") for path in reads}
        for path, answer in texts.items():
            leaked = [s for s in secret if s in answer.text]
            assert not leaked, (role, path, leaked)
        # the pending invite (its address) is for those who run the workspace
        pending = f"{rows.mark}-pending@example.com"
        manages = ROLE_RANK[role] >= ROLE_RANK[Role.ADMIN]
        assert (pending in texts["/app/workspace"].text) is manages, role
        if not manages:
            assert not [path for path, answer in texts.items() if pending in answer.text], role
        # every task, for everyone
        for key in rows.tasks.values():
            assert texts[f"/v1/tasks/{quote(key, safe='')}"].status_code == 200, (role, key)
            assert texts[f"/app/t/{quote(key, safe='')}"].status_code == 200, (role, key)
            assert key in texts["/v1/tasks"].text, (role, key)
        for r in (Role.OWNER, Role.ADMIN, Role.MEMBER):
            assert f"{rows.mark} {r} make" in texts["/app/tasks"].text, (role, r)
        assert f"{rows.mark} log line" in texts[
            f"/v1/tasks/{quote(rows.tasks['log'], safe='')}/log"].text
        # the deliveries to the shared channel, for everyone
        for d in shared_deliveries:
            assert texts[f"/v1/notifications/{d}"].status_code == 200, role
            assert d in texts["/v1/notifications"].text, role
            assert f"/app/deliveries/{d}/replay" in texts["/app/deliveries"].text, role
        # the shared channel, for members up (a viewer's refusal is the role's, as for any id)
        for path in (f"/v1/channels/{rows.shared}", f"/app/channels/{rows.shared}"):
            assert texts[path].status_code == (200 if reads_channels else 403), (role, path)
        if reads_channels:
            assert rows.shared in texts["/v1/channels"].text
            assert f"{rows.mark}-shared" in texts["/app/channels"].text
        # another's personal channel: not found, as an id nobody has; their own: theirs
        for cid in hidden.values():
            for route_key in ("GET /v1/channels/{channel_id}", "GET /app/channels/{channel_id}",
                              "POST /app/channels/{channel_id}/test",
                              "DELETE /v1/channels/{channel_id}/template"):
                method, path = _path(route_key, {"channel_id": cid})
                _, nobody = _path(route_key)
                answer = _answer(person, method, path, route_key)
                assert _same(answer, _answer(person, method, nobody, route_key)), (
                    role, route_key)
                assert answer.status_code == (404 if reads_channels else 403), (role, route_key)
            for d in rows.deliveries[cid]:
                for route_key in ("GET /v1/notifications/{notification_id}",
                                  "POST /v1/notifications/{notification_id}/replay",
                                  "POST /app/deliveries/{delivery_id}/replay"):
                    method, path = _path(route_key, {"notification_id": d, "delivery_id": d})
                    _, nobody = _path(route_key)
                    answer = _answer(person, method, path, route_key)
                    assert _same(answer, _answer(person, method, nobody, route_key)), (
                        role, route_key)
        if own is not None:
            assert own in texts["/v1/channels"].text
            assert f"{rows.mark}-{role}-personal" in texts["/app/channels"].text
            assert person.browser.get(f"/app/channels/{own}").status_code == 200
            for d in rows.deliveries[own]:
                assert d in texts["/v1/notifications"].text
                assert f"/app/deliveries/{d}/replay" in texts["/app/deliveries"].text
    with server.runtime.sessions() as db:  # no replay went through: every one is still dead
        assert set(db.scalars(select(Delivery.status).where(
            Delivery.workspace_id == team.workspace_id, Delivery.kind == "event"))) == {"dead"}


def test_a_person_in_two_teams_sees_each_only_through_what_acts_in_it(
    server: Server, two_teams: tuple[Rows, Rows]
) -> None:
    """B's member also joins team C: their B token and their browser looking at B see nothing
    of C (what they reported there included), their C token sees it; and a role changed in C
    holds for their next request, with the same token and browser."""
    client, b_team = server.client, two_teams[1].team
    person = b_team[Role.MEMBER]
    c_owner = server.make_user(plan="pro")
    made = client.post("/v1/workspace/invites", json={"email": person.email},
                       headers=c_owner.headers)
    assert made.status_code == 201, made.text
    assert browser_of(client).post("/app/invite", data={
        "token": invite_secret(client, person.email)}).status_code == 303
    c_token = client.post(f"/v1/workspaces/{c_owner.user_id}/token",
                          headers=person.account.headers).json()["token"]
    in_c = {"Authorization": f"Bearer {c_token}"}
    mark = f"mark{uuid.uuid4().hex[:12]}"
    keys = []
    for headers in (c_owner.headers, in_c):
        key = f"{mark}-{uuid.uuid4().hex[:6]}"
        assert client.post("/v1/events", headers=headers,
                           json=_event(task_id=key, command=f"{mark} in c")).status_code == 202
        keys.append(key)
    seen_in_c = client.get("/v1/tasks", headers=in_c).text
    assert all(k in seen_in_c for k in keys)
    for looker in b_team.people.values():  # the B token and browser of everyone in B
        assert mark not in client.get("/v1/tasks", headers=looker.headers).text
        assert mark not in client.get("/v1/notifications", headers=looker.headers).text
        assert mark not in looker.browser.get("/app/tasks").text
        assert mark not in looker.browser.get("/app/account/export").text or looker is person
        for key in keys:
            assert client.get(f"/v1/tasks/{key}", headers=looker.headers).status_code == 404
            assert looker.browser.get(f"/app/t/{key}").status_code == 404
    assert mark not in client.get("/v1/tasks", headers=person.account.headers).text  # their own

    b, _ = look_at(server, person.email, c_owner.user_id)
    assert mark in b.get("/app/tasks").text
    for role, events, pages in ((Role.VIEWER, 403, 403), (Role.ADMIN, 202, 200)):
        changed = client.patch(f"/v1/workspace/members/{person.user_id}", json={"role": role},
                               headers=c_owner.headers)
        assert changed.status_code == 200, changed.text
        sent = client.post("/v1/events", headers=in_c, json=_event())
        assert sent.status_code == events, (role, sent.text)
        assert b.get("/app/channels").status_code == pages
        invites = client.get("/v1/workspace/invites", headers=in_c)
        assert _refused(invites) is (role == Role.VIEWER)
        assert (b.get("/app/workspace/activity").status_code == 403) is (role == Role.VIEWER)
    assert client.get("/v1/workspace", headers=person.headers).json()["role"] == Role.MEMBER
