"""The agent tunnel's messages are built in one module for both ends; these pin their bytes as
each end has always sent them (older agents and servers read them), and that the app answers the
tunnel ahead of its middleware whoever serves it."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from claude_notify.agent import wire
from claude_notify.agent.tunnel import agent_url
from claude_notify.cloud.server.app import ServerApp, create_app
from claude_notify.cloud.server.runtime import Runtime


def _agent_bytes(message: object) -> str:
    return json.dumps(message)  # as claude_notify.agent.tunnel sends


def _server_bytes(message: object) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)  # starlette send_json


def test_the_agents_messages_keep_their_bytes() -> None:
    policy: wire.Policy = {"allow": ["make *"], "deny": [], "dirs": ["/srv"], "claude": False}
    assert _agent_bytes(wire.hello(running=["c1"], sessions=["s1"], policy=policy)) == (
        '{"type": "hello", "running": ["c1"], "sessions": ["s1"], "policy": {"allow": '
        '["make *"], "deny": [], "dirs": ["/srv"], "claude": false}}')
    assert _agent_bytes(wire.started("c1")) == '{"type": "started", "id": "c1"}'
    assert _agent_bytes(wire.ping()) == '{"type": "ping"}'
    assert _agent_bytes(wire.result(id="c1", state="failed", exit_code=2,
                                    detail="exit code 2")) == (
        '{"type": "result", "id": "c1", "state": "failed", "exit_code": 2, '
        '"detail": "exit code 2"}')
    assert _agent_bytes(wire.result(id="c2", state=None, exit_code=None, detail=None)) == (
        '{"type": "result", "id": "c2", "state": null, "exit_code": null, "detail": null}')


def test_the_servers_messages_keep_their_bytes() -> None:
    sent = wire.command(id="c1", session_id="s1", command="make", cwd="/srv/p", source="api",
                        kind="shell")
    assert _server_bytes(sent) == ('{"type":"command","id":"c1","session_id":"s1",'
                                   '"command":"make","cwd":"/srv/p","source":"api",'
                                   '"kind":"shell"}')
    assert _server_bytes(wire.ack("c1")) == '{"type":"ack","id":"c1"}'
    assert _server_bytes(wire.pong()) == '{"type":"pong"}'


def test_the_agent_dials_the_tunnels_path() -> None:
    assert agent_url("https://cn.example.com/base/") == "wss://cn.example.com/base/v1/agent"
    assert agent_url("http://127.0.0.1:8000") == "ws://127.0.0.1:8000/v1/agent"


def test_the_app_answers_the_tunnel_itself(runtime: Runtime) -> None:
    """No wrapper needed: a bare create_app() refuses a non-agent token with the tunnel's own
    close code (1008), not the router's 403 for an unknown websocket path."""
    app = create_app(runtime=runtime)
    assert isinstance(app, ServerApp)
    with TestClient(app) as client:
        try:
            with client.websocket_connect(wire.PATH, headers={"Authorization": "Bearer nope"}):
                raise AssertionError("a stranger's token was accepted")
        except WebSocketDisconnect as closed:
            assert (closed.code, closed.reason) == (1008, "not an agent token")
