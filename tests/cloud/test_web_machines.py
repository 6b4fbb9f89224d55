"""The machines on the Tokens page: online or not from the agent's heartbeats, and what its
allow-list permits as the agent reported it (shown as text; the agent decides on its machine)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from cloud_kit import Account, Mailbox, register_agent, wait_for
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from web_kit import browser_of, sign_in

from claude_notify.agent import wire
from claude_notify.cloud.server.relay import tunnel
from claude_notify.cloud.server.relay.models import RelayAgent
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.events import utcnow

HOSTILE = "<script>alert(1)</script> make *"


def _machine_row(page: str) -> str:
    return page.split('<table class="machines">')[1].split("</table>")[0]


def test_a_machine_shows_online_with_what_its_agent_reported_it_may_run(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime,
    make_user: Callable[..., Account], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tunnel, "SEEN_EVERY_S", 0.0)  # every heartbeat is written down
    user = make_user(plan="pro")
    token = register_agent(client, user, "laptop-1")
    b = browser_of(client)
    sign_in(b, smtp_server, user.email)
    before = _machine_row(b.get("/app/access").text)
    assert "offline" in before and "not reported" in before

    policy: wire.Policy = {"allow": [HOSTILE, "./next.sh"], "deny": ["rm *"],
                           "dirs": ["/srv/app"], "claude": True}
    with client.websocket_connect("/v1/agent",
                                  headers={"Authorization": f"Bearer {token}"}) as ws:
        ws.send_json(wire.hello(running=[], sessions=[], policy=policy))
        ws.send_json(wire.ping())
        assert ws.receive_json() == wire.pong()
        shown = wait_for(lambda: (lambda row: row if "online" in row else None)(
            _machine_row(b.get("/app/access").text)), what="the machine online")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; make *" in shown and "<script>" not in shown
    assert "./next.sh" in shown and "rm *" in shown and "/srv/app" in shown
    assert "replies to Claude: on" in shown

    with runtime.sessions.begin() as db:  # silent for longer than relay_idle_s
        db.execute(update(RelayAgent).values(last_seen_at=utcnow() - timedelta(minutes=5)))
    assert "offline" in _machine_row(b.get("/app/access").text)


def test_heartbeats_are_written_at_most_once_per_interval_and_a_policy_is_bounded(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account],
) -> None:
    user = make_user(plan="pro")
    token = register_agent(client, user, "laptop-2")

    def seen() -> object:
        with runtime.sessions() as db:
            return db.scalar(select(RelayAgent.last_seen_at))

    huge = {"allow": ["x" * 10_000] * 1_000 + [7, None], "deny": "rm", "dirs": [{"a": 1}],
            "claude": "yes"}
    with client.websocket_connect("/v1/agent",
                                  headers={"Authorization": f"Bearer {token}"}) as ws:
        ws.send_json({"type": "hello", "running": [], "sessions": [], "policy": huge})
        ws.send_json(wire.ping())
        assert ws.receive_json() == wire.pong()
        at_hello = seen()
        with runtime.sessions.begin() as db:
            db.execute(update(RelayAgent).values(last_seen_at=utcnow() - timedelta(hours=1)))
        for _ in range(3):  # within SEEN_EVERY_S of the hello: nothing written
            ws.send_json(wire.ping())
            assert ws.receive_json() == wire.pong()
    assert at_hello is not None and seen() < at_hello  # type: ignore[operator]
    with runtime.sessions() as db:
        stored = db.scalar(select(RelayAgent.policy))
    assert stored is not None
    assert len(stored["allow"]) == tunnel.POLICY_ENTRIES
    assert {len(a) for a in stored["allow"]} == {tunnel.POLICY_CHARS}
    assert (stored["deny"], stored["dirs"], stored["claude"]) == ([], [], False)
