"""A token's scopes hold on the workspace routes too, on top of the caller's role.

A token made to send events only (a CI job's) belongs to a person who may be the workspace's
owner; leaked, it must not invite someone in (as admin), change or remove members, hand the
workspace over, make its person leave or read the team's members. A machine's sign-in (events
and tasks, what ``claude-notify login`` asks for) reads and may switch workspace; managing the
workspace needs ``channels:write`` (``login --manage``, or the account token).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from cloud_kit import Account
from fastapi.testclient import TestClient

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.db.models import User, WorkspaceMember
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.events import utcnow


def _token(runtime: Runtime, who: Account, *scopes: str) -> dict[str, str]:
    with runtime.sessions.begin() as session:
        user = session.get(User, who.user_id)
        assert user is not None
        issued = auth.issue_token(session, user, scopes=scopes, name="narrow")
        return {"Authorization": f"Bearer {issued.secret}"}


def _team(runtime: Runtime, make_user: Callable[..., Account]) -> tuple[Account, Account]:
    owner, member = make_user(plan="pro"), make_user()
    with runtime.sessions.begin() as session:
        session.add(WorkspaceMember(workspace_id=owner.user_id, user_id=member.user_id,
                                    role="member", created_at=utcnow()))
    return owner, member


def test_an_events_only_token_cannot_run_the_workspace(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account],
) -> None:
    owner, member = _team(runtime, make_user)
    ci = _token(runtime, owner, "events:write")
    attempts = [
        ("POST", "/v1/workspace/invites", {"email": "attacker@example.com", "role": "admin"}),
        ("PATCH", f"/v1/workspace/members/{member.user_id}", {"role": "viewer"}),
        ("DELETE", f"/v1/workspace/members/{member.user_id}", None),
        ("POST", "/v1/workspace/transfer", {"email": member.email}),
        ("GET", "/v1/workspace/members", None),
        ("GET", "/v1/workspace/invites", None),
        ("GET", "/v1/workspace/activity", None),
        ("GET", "/v1/workspaces", None),
        ("POST", f"/v1/workspaces/{owner.user_id}/token", None),
    ]
    for method, path, body in attempts:
        got = client.request(method, path, json=body, headers=ci)
        assert got.status_code == 403, (method, path, got.text)
        assert "scope" in got.json()["error"]["message"], (method, path, got.text)
    member_ci = _token(runtime, member, "events:write")
    for method, path in (("POST", "/v1/workspace/leave"),
                         ("POST", "/v1/workspace/transfer/accept")):
        got = client.request(method, path, headers=member_ci)
        assert got.status_code == 403 and "scope" in got.text, (path, got.text)
    # Nothing happened: the member is still there, as a member, and nobody was invited.
    listed = client.get("/v1/workspace/members", headers=owner.headers).json()
    assert {m["email"]: m["role"] for m in listed} == {owner.email: "owner",
                                                        member.email: "member"}
    assert client.get("/v1/workspace/invites", headers=owner.headers).json() == []


def test_a_machines_sign_in_reads_and_switches_but_manages_with_manage(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account],
) -> None:
    owner, member = _team(runtime, make_user)
    machine = _token(runtime, member, "events:write", "tasks:read")
    assert client.get("/v1/workspace/members", headers=machine).status_code == 200
    switched = client.post(f"/v1/workspaces/{owner.user_id}/token", headers=machine)
    assert switched.status_code == 201, switched.text
    assert sorted(switched.json()["scopes"]) == ["events:write", "tasks:read"]  # no more
    there = {"Authorization": f"Bearer {switched.json()['token']}"}
    assert client.get("/v1/workspace", headers=there).json()["id"] == str(owner.user_id)
    stranger = uuid.uuid4()
    assert client.post(f"/v1/workspaces/{stranger}/token", headers=machine).status_code == 404
    relay = _token(runtime, member, "relay")
    assert client.post(f"/v1/workspaces/{owner.user_id}/token",
                       headers=relay).status_code == 403

    owners_machine = _token(runtime, owner, "events:write", "tasks:read")
    refused = client.post("/v1/workspace/invites", json={"email": "new@example.com"},
                          headers=owners_machine)
    assert refused.status_code == 403 and "channels:write" in refused.text
    managing = _token(runtime, owner, "events:write", "tasks:read", "channels:write")
    made = client.post("/v1/workspace/invites", json={"email": "new@example.com"},
                       headers=managing)
    assert made.status_code == 201, made.text
