"""The cloud sink: every task event the user wants notified, forwarded to the hosted backend.

Never in the user's way: the sink only spools (one small file, flushed) and starts a detached
sync process, so a slow or dead server costs the wrapped command a few milliseconds, not a hang.
Whether to forward is the same decision the desktop notifier follows (``--on``, ``--match``,
``--every``, mute); a task's start is registered whatever the outcome will be.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from claude_notify.dispatch import Decision
    from claude_notify.events import TaskEvent


class CloudSink:
    """Spools requests for the backend and wakes the sender."""

    name: ClassVar[str] = "cloud"

    def __init__(self, *, channels: tuple[str, ...] = (), notify_on: str = "exit") -> None:
        self.channels = channels
        self.notify_on = notify_on

    def handle(self, event: TaskEvent, decision: Decision) -> None:
        from claude_notify.cloud import spool

        if event.type == "started":
            body = {"task_id": event.task_id, "cmd": event.command[:8192],
                    "session_id": event.session_id, "machine_id": event.machine_id,
                    "notify_on": self.notify_on, "channels": list(self.channels) or None}
            spool.put("POST", "/v1/tasks", body, key=f"task-{event.task_id}")
            # Sent with the task's first event: a short task then costs one sync process,
            # and a long one's progress and match events carry it out early.
            return
        if decision.notify:
            spool.put("POST", "/v1/events", event.to_dict(), key=event.event_id)
        else:
            return
        from claude_notify.background import spawn

        spawn("claude_notify.cloud.sync")
