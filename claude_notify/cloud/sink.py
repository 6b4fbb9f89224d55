"""The cloud sink: every task event the user wants notified, forwarded to the hosted backend.

Never in the user's way: the sink only spools (one small file, flushed) and starts a detached
sync process, so a slow or dead server costs the wrapped command a few milliseconds, not a hang.
Whether to forward is the same decision the desktop notifier follows (``--on``, ``--match``,
``--every``, mute); a task's start is registered whatever the outcome will be.

A task's registration is spooled when it starts and sent once it has run for
:data:`REGISTER_AFTER` seconds (or with its first event, whichever comes first): the backend knows
every task that runs long enough to matter, and a short one costs a single sync process.

When the spool cannot be written (a full disk, a read-only state dir), the request is sent
directly instead, within :data:`DIRECT_TIMEOUT`; only if that fails too is it lost, and the user
is told in one line.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from claude_notify.errors import CloudError
from claude_notify.sinks import Sink

if TYPE_CHECKING:
    from claude_notify.events import TaskEvent
    from claude_notify.sinks import NotifyDecision, RunWatch

REGISTER_AFTER = 1.0
DIRECT_TIMEOUT = 2.0


class CloudSink(Sink):
    """Spools requests for the backend and wakes the sender."""

    name: ClassVar[str] = "cloud"

    def __init__(self, *, channels: tuple[str, ...] = (), notify_on: str = "exit") -> None:
        self.channels = channels
        self.notify_on = notify_on
        self._register_at: float | None = None
        self._told = False

    def handle(self, event: TaskEvent, decision: NotifyDecision) -> None:
        if event.type == "started":
            # The machine's start time: the registration may reach the server much later.
            started = event.started_at.isoformat() if event.started_at is not None else None
            body = {"task_id": event.task_id, "cmd": event.command[:8192],
                    "session_id": event.session_id, "machine_id": event.machine_id,
                    "notify_on": self.notify_on, "channels": list(self.channels) or None,
                    "started_at": started}
            if self._put("/v1/tasks", body, key=f"task-{event.task_id}"):
                self._register_at = time.monotonic() + REGISTER_AFTER
        elif decision.notify and self._put("/v1/events", event.to_dict(), key=event.event_id):
            self._register_at = None
            self._kick()
        self._tell_set_aside()

    def _tell_set_aside(self) -> None:
        """Once per process: what the last background sync set aside, in one line (it had no
        terminal to say it on)."""
        if self._told:
            return
        self._told = True
        from claude_notify.cloud import spool

        found = spool.take_unreported()
        if not found:
            return
        name, reason = found[0]
        what = (f"1 spooled request set aside ({name}: {reason})" if len(found) == 1 else
                f"{len(found)} spooled requests set aside (the first, {name}: {reason})")
        raise CloudError(f"cloud: {what} in {spool.dead_dir()}")

    # Its timer while ``run`` runs (a :class:`~claude_notify.sinks.RunWatch`): one kick after
    # REGISTER_AFTER.

    def watch_run(self, task: TaskEvent) -> RunWatch:
        return self

    def feed(self, buf: bytes | bytearray, n: int) -> None:
        return None

    def next_deadline(self) -> float | None:
        return self._register_at

    def tick(self) -> None:
        if self._register_at is not None and time.monotonic() >= self._register_at:
            self._register_at = None
            self._kick()

    def close(self) -> None:
        return None

    def _put(self, path: str, body: Any, *, key: str) -> bool:
        """Spool the request (True), or send it at once when the spool cannot be written."""
        from claude_notify.cloud import spool

        try:
            spool.put("POST", path, body, key=key)
        except OSError as exc:
            self._send_now(path, body, why=exc.strerror or str(exc))
            return False
        return True

    def _send_now(self, path: str, body: Any, *, why: str) -> None:
        from claude_notify.cloud import account
        from claude_notify.cloud.client import CloudClient
        from claude_notify.errors import ClaudeNotifyError

        who = account.current()
        try:
            if who is None:
                raise CloudError("not logged in")
            with CloudClient(who.server, account.token(who), timeout=DIRECT_TIMEOUT) as client:
                client.request("POST", path, json=body)
        except ClaudeNotifyError as exc:
            raise CloudError(f"cloud: cannot spool ({why}) nor send ({exc}): "
                             "this event was not forwarded") from None

    @staticmethod
    def _kick() -> None:
        from claude_notify.background import spawn

        spawn("claude_notify.cloud.sync")
