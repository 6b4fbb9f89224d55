"""The agent tunnel: ``/v1/agent``, the WebSocket ``claude-notify agent`` holds open.

Only a ``relay`` token bound to a machine is accepted, and it receives only that machine's
commands. The messages are :mod:`claude_notify.agent.wire`'s: the server sends ``command``,
``ack``, ``pong`` and ``decision``; the agent sends ``hello`` (first), ``started``, ``result``,
``ping``, ``approval`` and ``withdraw`` (see :mod:`~claude_notify.cloud.server.relay.approvals`).

The app built by :func:`~claude_notify.cloud.server.app.create_app` hands this path to
:func:`serve` before its middleware stack and router, whoever serves it: every layer an idle
connection passes through stays suspended in it for hours (the stack's frames, exit stacks and
exception wrappers cost ~8 KB per agent), and the middleware has nothing to do for the tunnel
(no body, no access log, errors end in a close).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import datetime
from typing import Any

import anyio
from sqlalchemy import func, select, update
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from claude_notify.agent import wire
from claude_notify.cloud.server import auth
from claude_notify.cloud.server.relay import (
    approvals,
    discord_approvals,
    email_approvals,
    feishu_approvals,
    push_approvals,
    queue,
)
from claude_notify.cloud.server.relay.models import Approval, RelayAgent
from claude_notify.cloud.server.relay.state import Relay, relay_of
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.events import utcnow

log = logging.getLogger("claude_notify.server.relay")
SEEN_EVERY_S = 60.0
"""How often a connected agent's heartbeats are written down as ``last_seen_at``: the web app
calls it online while that is within ``relay_idle_s``, and 10,000 idle agents cost ~170 small
writes a second rather than ~670."""
ORPHAN_S = 90.0
"""How long an agent that went away with approvals waiting has to come back (it retries for a
minute after a server restart) before they are expired."""
POLICY_ENTRIES = 200
POLICY_CHARS = 512


def _agent_for(runtime: Runtime, secret: str) -> tuple[uuid.UUID, str, uuid.UUID] | None:
    """The user, machine and token behind an agent's credential."""
    with runtime.sessions.begin() as session:
        found = auth.authenticate(session, secret)
        if found is None:
            return None
        user, token = found
        if token.scopes.split() != ["relay"]:
            return None  # the events token, the account token: never an agent
        agent = session.get(RelayAgent, token.id)
        if agent is None or agent.user_id != user.id:
            return None
        agent.last_seen_at = utcnow()
        return user.id, agent.machine_id, token.id


async def serve(scope: Scope, receive: Receive, send: Send) -> None:
    """One agent connection, as a plain ASGI endpoint (``scope["app"]`` is the app).

    Not a FastAPI websocket route: that would wrap each connection in its dependency solving,
    exception handling and exit stacks, which an idle connection holds for hours.
    """
    websocket = WebSocket(scope, receive, send)
    runtime: Runtime = websocket.app.state.runtime
    relay = relay_of(websocket.app.state)
    scheme, _, secret = websocket.headers.get("authorization", "").partition(" ")
    found = None
    if scheme.lower() == "bearer" and secret:
        found = await anyio.to_thread.run_sync(_agent_for, runtime, secret.strip())
    if found is None:
        await websocket.close(code=1008, reason="not an agent token")
        return
    await websocket.accept()
    user_id = found[0]
    if not runtime.agent_sockets.take(user_id):
        # Accepted, then closed with "try again later": refused before the handshake, the
        # agent would read a 403 and stop for good.
        await websocket.close(code=1013, reason="too many agent connections for this "
                                            "account; retrying later")
        return
    try:
        await _Link(websocket, runtime, relay, *found).serve()
    finally:
        runtime.agent_sockets.release(user_id)


class _Link:
    """One connected agent.

    An idle connection is a coroutine waiting for the agent's next message plus two timer
    handles (the queue's periodic re-read, the silence limit), never a waiting task: each task
    and the objects around it cost kilobytes, times thousands of agents. A wake-up starts a
    short-lived task that sends what is due; only one runs at a time per connection (``sent``
    and the queue's own rules keep a command from being handed over twice).
    """

    def __init__(self, websocket: WebSocket, runtime: Runtime, relay: Relay,
                 user_id: uuid.UUID, machine_id: str, token_id: uuid.UUID) -> None:
        self.ws, self.runtime, self.relay = websocket, runtime, relay
        self.key = (user_id, machine_id)
        self.token_id = token_id
        self.sent: set[uuid.UUID] = set()
        self.awaiting: set[uuid.UUID] = set()
        """Approvals filed over this connection whose answer the agent has not been handed."""
        self.tasks: set[asyncio.Future[None]] = set()
        self.loop = asyncio.get_running_loop()
        self.heard = self.seen = self.loop.time()
        self.flushing = True  # the backlog is sent before anything else
        self.again = False
        self.closed = False
        self.sender: asyncio.Future[None] | None = None
        self.closer: asyncio.Future[None] | None = None
        self.poll: asyncio.TimerHandle | None = None
        self.silence: asyncio.TimerHandle | None = None

    async def serve(self) -> None:
        """Until the agent goes, goes silent, or either direction fails: then the connection
        closes and the agent reconnects (its commands are in the database, nothing is lost)."""
        try:
            hello = await asyncio.wait_for(self.ws.receive_json(), self.relay.policy.idle_s)
        except WebSocketDisconnect:
            return
        except (asyncio.TimeoutError, ValueError):
            hello = None
        if not isinstance(hello, dict) or hello.get("type") != wire.HELLO:
            await self.ws.close(code=1002, reason="expected hello")
            return
        await self._db(self._hello, hello)
        del hello  # not held for the connection's lifetime
        with self.relay.hub.connected(self.key, self.wake, token_id=self.token_id, cut=self.cut):
            try:
                await self._send_due()  # the backlog goes before any reply
                self.silence = self.loop.call_at(self.heard + self.relay.policy.idle_s,
                                                 self._check_silence)
                await self._receive_loop()
            except WebSocketDisconnect:
                pass
            except Exception as exc:  # any failure ends this connection only
                log.info("agent connection closed: %s: %s", type(exc).__name__, exc)
            finally:
                self.closed = True
                for timer in (self.poll, self.silence):
                    if timer is not None:
                        timer.cancel()
                if self.sender is not None and not self.sender.done():
                    self.sender.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await self.sender
                with contextlib.suppress(Exception):  # already closed by the agent, most often
                    await self.ws.close(code=1001)
                if self.awaiting:
                    self._orphaned(set(self.awaiting))

    def _orphaned(self, ids: set[uuid.UUID]) -> None:
        """Approvals whose agent went away while they waited: unless it is back within
        :data:`ORPHAN_S` (a restart, a network blip: it files them again), they are expired and
        their cards say so, rather than offering buttons nobody is listening to."""
        gone_at = utcnow()

        def check() -> None:
            self._later(self._expire_orphans(ids, gone_at))

        self.loop.call_later(ORPHAN_S, check)

    async def _expire_orphans(self, ids: set[uuid.UUID], gone_at: datetime) -> None:
        for approval_id in await self._db(self._expire_if_gone, ids, gone_at):
            await approvals.edit_cards(self.runtime, approval_id)

    def _expire_if_gone(self, ids: set[uuid.UUID], gone_at: datetime) -> list[uuid.UUID]:
        user_id, machine_id = self.key
        with self.runtime.sessions.begin() as session:
            back = session.scalar(select(func.max(RelayAgent.last_seen_at)).where(
                RelayAgent.user_id == user_id, RelayAgent.machine_id == machine_id))
            if back is not None and back > gone_at:
                return []
            return approvals.expire_orphans(session, sorted(ids))

    def cut(self) -> None:
        """Close the connection: its token was revoked (the hub's callback). The agent's
        reconnection is then refused."""
        if self.closed:
            return
        log.info("agent connection closed: its token was revoked")
        self.closed = True  # no wake-up sends anything from now on
        self._close(1008)

    def wake(self) -> None:
        """Send what is due now (the hub's callback, and the periodic re-read)."""
        if self.closed:
            return
        if self.flushing:
            self.again = True  # the running send re-reads the queue once it is done
            return
        self.flushing = True
        self.sender = asyncio.ensure_future(self._send_task())

    async def _send_task(self) -> None:
        try:
            await self._send_due()
        except Exception as exc:  # the agent reconnects; nothing is lost
            log.info("agent connection closed: %s: %s", type(exc).__name__, exc)
            self._close(1011)

    async def _send_due(self) -> None:
        """Send the queue until a re-read finds nothing new; then re-arm the periodic re-read."""
        try:
            while True:
                self.again = False
                due = await self._db(self._due)
                if due is None:
                    self.cut()
                    return
                for message in due:
                    await self.ws.send_json(message)
                if not self.again:
                    break
        finally:
            self.flushing = False
        if self.poll is not None:
            self.poll.cancel()
        self.poll = self.loop.call_later(self.relay.policy.poll_s, self.wake)

    async def _receive_loop(self) -> None:
        while True:
            message = await self.ws.receive_json()
            self.heard = self.loop.time()
            kind = message.get("type") if isinstance(message, dict) else None
            if kind == wire.PING:
                await self.ws.send_json(wire.pong())
                if self.heard - self.seen >= SEEN_EVERY_S:  # presence, for the web app
                    self.seen = self.heard
                    await self._db(self._seen)
            elif kind in (wire.STARTED, wire.RESULT):
                reply = await self._db(self._report, message)
                if reply is not None:
                    await self.ws.send_json(reply)
                self.wake()  # a finished command lets its session's next one go
            elif kind == wire.APPROVAL:
                await self._approval(message)
            elif kind == wire.WITHDRAW:
                closed = await self._db(self._withdraw, message)
                for approval_id in closed:
                    self._later(approvals.edit_cards(self.runtime, approval_id))

    async def _approval(self, message: dict[str, Any]) -> None:
        """File an approval; its cards go out beside the connection, its answer on a wake-up
        (or at once, when it has one already or nobody can be asked)."""
        reply = await self._db(self._file, message)
        if isinstance(reply, tuple):
            approval_id, new = reply
            self.awaiting.add(approval_id)
            if new:  # filed again after a reconnect: its cards are out already
                self._later(approvals.send_cards(self.runtime, approval_id))
                # browsers (#21)
                self._later(push_approvals.push_approval(self.runtime, approval_id))
            self.wake()
        elif reply is not None:
            await self.ws.send_json(reply)

    def _later(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("approval cards: %s: %s", type(exc).__name__, exc)

    def _check_silence(self) -> None:
        """Close a connection whose agent has said nothing for ``idle_s`` (it may be gone
        without a FIN): the pending receive then ends with the disconnect."""
        deadline = self.heard + self.relay.policy.idle_s
        if self.loop.time() < deadline:
            self.silence = self.loop.call_at(deadline, self._check_silence)
            return
        log.info("agent connection closed: silent for %.0f s", self.relay.policy.idle_s)
        self._close(1001)

    def _close(self, code: int) -> None:
        self.closer = asyncio.ensure_future(self._close_quietly(code))

    async def _close_quietly(self, code: int) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code=code)

    async def _db(self, func: Any, *args: Any) -> Any:
        return await anyio.to_thread.run_sync(func, *args)

    def _hello(self, hello: dict[str, Any]) -> None:
        user_id, machine_id = self.key
        alive = [_uuid(x) for x in hello.get("running", []) if isinstance(x, str)]
        sessions = [s for s in hello.get("sessions", []) if isinstance(s, str)][:100]
        with self.runtime.sessions.begin() as session:
            queue.orphaned(session, user_id, machine_id, [a for a in alive if a is not None])
            session.execute(update(RelayAgent).where(
                RelayAgent.user_id == user_id, RelayAgent.machine_id == machine_id)
                .values(sessions=sessions, policy=_policy(hello.get("policy")),
                        last_seen_at=utcnow()))

    def _seen(self) -> None:
        with self.runtime.sessions.begin() as session:
            session.execute(update(RelayAgent).where(RelayAgent.token_id == self.token_id)
                            .values(last_seen_at=utcnow()))

    def _due(self) -> list[wire.Command | wire.Decision] | None:
        """The commands and answers to send; ``None`` when the token was revoked (checked in the
        same transaction, so nothing is handed over after its revocation committed)."""
        with self.runtime.sessions.begin() as session:
            if not auth.is_live(session, self.token_id):
                return None
            rows = queue.due(session, *self.key, self.sent)
            out: list[wire.Command | wire.Decision] = [
                wire.command(id=str(r.id), session_id=r.session_id, command=r.command,
                             cwd=r.cwd, source=r.source, kind=r.kind) for r in rows]
            if self.awaiting:  # one more query only while an approval waits
                answers = approvals.unreported(session, *self.key, set(self.awaiting))
                self.awaiting.difference_update(uuid.UUID(a["id"]) for a in answers)
                out += answers
        self.sent.update(r.id for r in rows)
        return out

    def _file(self, message: dict[str, Any]) -> tuple[uuid.UUID, bool] | wire.Decision | None:
        """A pending approval's id and whether it is new; the answer itself for one already
        answered or that nobody can answer; ``None`` for a malformed one (ignored)."""
        digest = str(message.get("digest") or "")[:64]
        try:
            with self.runtime.sessions.begin() as session:
                known = session.get(Approval, uuid.UUID(str(message.get("id")))) is not None
                settings = self.runtime.settings
                row = approvals.file(session, *self.key, message,
                                     slack=bool(settings.slack_signing_secret),
                                     email=email_approvals.can_send(settings),
                                     discord=discord_approvals.configured(settings),
                                     feishu=feishu_approvals.configured(settings))
                if row.state == "pending":
                    return row.id, not known
                row.reported_at = utcnow()
                return approvals.decision_of(row)
        except approvals.Unavailable as exc:
            return wire.decision(id=str(message.get("id")), state="unavailable", digest=digest,
                                 detail=str(exc))
        except (ValueError, TypeError):
            return None

    def _withdraw(self, message: dict[str, Any]) -> list[uuid.UUID]:
        with self.runtime.sessions.begin() as session:
            closed = approvals.withdraw(session, *self.key, message)
        self.awaiting.difference_update(closed)
        return closed

    def _report(self, message: dict[str, Any]) -> wire.Ack | None:
        command_id = _uuid(message.get("id"))
        if command_id is None:
            return None
        with self.runtime.sessions.begin() as session:
            if message["type"] == wire.STARTED:
                queue.started(session, *self.key, command_id)
                return None
            exit_code = message.get("exit_code")
            queue.finished(session, *self.key, command_id, state=str(message.get("state")),
                           exit_code=exit_code if isinstance(exit_code, int) else None,
                           detail=str(message.get("detail") or "")[:2000] or None)
        return wire.ack(str(command_id))


def _policy(value: object) -> dict[str, Any] | None:
    """What the agent says it may run, bounded and typed (it is only ever shown, as text)."""
    if not isinstance(value, dict):
        return None

    def strings(key: str) -> list[str]:
        items = value.get(key)
        if not isinstance(items, list):
            return []
        return [x[:POLICY_CHARS] for x in items if isinstance(x, str)][:POLICY_ENTRIES]

    return {"allow": strings("allow"), "deny": strings("deny"), "dirs": strings("dirs"),
            "claude": value.get("claude") is True}


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
