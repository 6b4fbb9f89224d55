"""SIGTERM for ``claude-notify server``: drain within ``shutdown_grace_s``, lose nothing.

uvicorn already stops listening, closes WebSockets with 1012 (:data:`~claude_notify.agent.wire.
RESTARTING`: the agents reconnect at once, to another replica or to this one's successor), waits
up to ``timeout_graceful_shutdown`` for requests in flight and then runs the app's shutdown, where
the embedded worker drains. Told only then, the worker would keep claiming while requests finish
and its drain would come on top of theirs; :class:`DrainingServer` tells it first, so both drains
share one grace period.
"""

from __future__ import annotations

import socket

import uvicorn


class DrainingServer(uvicorn.Server):
    """A uvicorn server that calls its app's ``stopping()`` (if it has one) on SIGTERM, and
    exits 0 once drained.

    uvicorn raises the signal again after its shutdown, so the process would end "killed by
    SIGTERM" however cleanly it drained; an orchestrator or a supervisor then cannot tell a
    drained exit from a killed one.
    """

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        stopping = getattr(self.config.app, "stopping", None)
        if callable(stopping):
            stopping()
        await super().shutdown(sockets)
        self._captured_signals.clear()  # drained: exit 0 rather than die of the signal
