"""``run --stream``: the task's output sent to the backend while it runs.

The relay hands every chunk to :meth:`Streamer.feed`, which only copies it into a bounded buffer
and returns: the command is never slowed down by the network. A thread uploads the buffer in
batches. When the server falls behind (or is away), the oldest unsent bytes are dropped once the
buffer is full and the gap is marked in the log — the backend keeps a tail anyway. At the end,
what is left is uploaded within a deadline, or spooled for ``sync``, and then the SHA-256 of the
whole output (dropped bytes included), which the server checks when it holds all of it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar

from claude_notify.sinks import Sink

if TYPE_CHECKING:
    from claude_notify.events import TaskEvent
    from claude_notify.sinks import NotifyDecision

BATCH = 512 * 1024
"""Bytes per upload (the server takes up to 1 MiB a request)."""
LIMIT = 8 * 1024 * 1024
"""Unsent bytes kept at most; beyond it the oldest are dropped."""
INTERVAL = 0.5
"""Seconds between uploads when output trickles."""
CLOSE_TIMEOUT = 5.0
"""Seconds the upload of what is left may take once the command has ended."""


class StreamSink(Sink):
    """The sink of ``run --stream``: no events, the output of the run, through a
    :class:`Streamer`."""

    name: ClassVar[str] = "stream"

    def handle(self, event: TaskEvent, decision: NotifyDecision) -> None:
        return None

    def watch_run(self, task: TaskEvent) -> Streamer:
        started = task.started_at.isoformat() if task.started_at is not None else None
        return Streamer(task={"task_id": task.task_id, "cmd": task.command[:8192],
                              "session_id": task.session_id, "machine_id": task.machine_id,
                              "started_at": started})


class Streamer:
    """Buffers output and uploads it from a thread."""

    def __init__(self, *, task: dict[str, Any], limit: int = LIMIT) -> None:
        self.task = task
        self.limit = limit
        self._buf = bytearray()
        self._dropped = 0
        self._sha256 = hashlib.sha256()  # of everything the command wrote, dropped bytes too
        self._total = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._deadline = float("inf")
        self._client: Any = None
        self.sent = 0
        self.problem: str | None = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="claude-notify-stream")
        self._thread.start()

    # -- the relay's side: cheap, never blocks on the network ------------------------------

    def feed(self, buf: bytes | bytearray, n: int) -> None:
        chunk = memoryview(buf)[:n]
        self._sha256.update(chunk)
        self._total += len(chunk)
        with self._lock:
            self._buf += chunk
            overflow = len(self._buf) - self.limit
            if overflow > 0:
                del self._buf[:overflow]
                self._dropped += overflow
            ready = len(self._buf) >= BATCH
        if ready:
            self._wake.set()

    def next_deadline(self) -> float | None:
        return None

    def tick(self) -> None:
        return None

    # -- the uploader ----------------------------------------------------------------------

    def _run(self) -> None:
        from claude_notify.errors import ClaudeNotifyError

        try:
            self._client = self._connect()
        except ClaudeNotifyError as exc:
            self.problem = str(exc)
        delay = INTERVAL
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            if self._client is not None:
                try:
                    while self._upload_one():
                        if self._closing and time.monotonic() >= self._deadline:
                            break
                    delay = INTERVAL
                except ClaudeNotifyError as exc:
                    self.problem = str(exc)
                    delay = min(delay * 2, 10.0)  # the server is away: keep buffering
            if self._closing:
                return

    def _connect(self) -> Any:
        from claude_notify.cloud import account
        from claude_notify.cloud.client import CloudClient

        who = account.current()
        if who is None:
            from claude_notify.errors import CloudError

            raise CloudError("--stream needs `claude-notify login`")
        client = CloudClient(who.server, account.token(who), timeout=5.0)
        client.request("POST", "/v1/tasks", json=self.task)  # idempotent on task_id
        return client

    def _upload_one(self) -> bool:
        """Send one batch; it leaves the buffer first, so it is never sent twice."""
        with self._lock:
            if not self._buf and not self._dropped:
                return False
            marker = (f"\n[claude-notify: {self._dropped} bytes not uploaded]\n".encode()
                      if self._dropped else b"")
            batch = bytes(self._buf[:BATCH])
            del self._buf[:BATCH]
            dropped, self._dropped = self._dropped, 0
        try:
            self._client.request("POST", f"/v1/tasks/{self.task['task_id']}/log",
                                 content=marker + batch)
        except BaseException:
            with self._lock:  # put it back in front for the next try
                self._buf[:0] = batch
                self._dropped += dropped
            raise
        self.sent += len(batch)
        return True

    def close(self, timeout: float = CLOSE_TIMEOUT) -> str | None:
        """Upload what is left within ``timeout``, spool the rest for ``sync``; what went wrong
        on the way, if anything, as a warning."""
        self._deadline = time.monotonic() + timeout
        self._closing = True
        self._wake.set()
        self._thread.join(timeout + 0.5)
        with self._lock:
            rest = bytes(self._buf)
            self._buf.clear()
        task_id = self.task["task_id"]
        digest = {"sha256": self._sha256.hexdigest(), "bytes": self._total}
        if rest:
            from claude_notify.cloud import spool

            spool.put("POST", f"/v1/tasks/{task_id}/log", None, key=f"log-{task_id}", raw=rest)
        if rest or not self._send_digest(digest):  # after the log's rest, never before it
            from claude_notify.cloud import spool

            spool.put("PUT", f"/v1/tasks/{task_id}/log/digest", digest, key=f"digest-{task_id}")
        if self._client is not None and not self._thread.is_alive():
            self._client.close()
        return f"--stream: {self.problem}" if self.problem else None

    def _send_digest(self, digest: dict[str, Any]) -> bool:
        """The SHA-256 of the whole output: what is left of it once the server keeps a tail."""
        from claude_notify.errors import ClaudeNotifyError

        if self._client is None or self._thread.is_alive():
            return False
        try:
            self._client.request("PUT", f"/v1/tasks/{self.task['task_id']}/log/digest",
                                 json=digest)
        except ClaudeNotifyError:
            return False
        return True
