"""Probes: ``/healthz`` says the process answers, ``/readyz`` that it can serve.

They differ on purpose. An orchestrator restarts a replica whose liveness probe fails, and takes
out of its load balancer one whose readiness probe fails. A lost database is not cured by a
restart (every replica would restart in a loop), so only ``/readyz`` looks at the database,
its migrations and Redis: a replica that lost them stops getting traffic instead of answering
500s, and comes back by itself.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter
from sqlalchemy.exc import SQLAlchemyError

from claude_notify.cloud.server.api.deps import RuntimeDep
from claude_notify.cloud.server.api.errors import ApiError
from claude_notify.cloud.server.db.migrate import code_heads, database_heads, known_revisions
from claude_notify.cloud.server.runtime import Runtime

router = APIRouter(tags=["health"])
log = logging.getLogger("claude_notify.server")

REDIS_TIMEOUT_S = 2.0
"""A Redis that takes longer than this to answer a PING counts as unreachable."""


@router.get("/healthz", summary="Liveness: the process answers (nothing else is checked)")
async def healthz() -> dict[str, str]:
    # async and without dependencies: answered on the event loop even when every thread-pool
    # slot waits on a database, which is exactly when a restart would not help.
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database reachable, migrations current, Redis up")
def readyz(runtime: RuntimeDep) -> dict[str, object]:
    checks: dict[str, str] = {}
    problems: list[str] = []
    try:
        with runtime.engine.connect() as connection:
            found = database_heads(connection)
    except SQLAlchemyError as exc:
        # The driver's text can name hosts and users: it goes to the log, not to the prober.
        log.warning("readiness: database unreachable: %s", exc.__class__.__name__)
        checks["database"] = "unreachable"
        problems.append("database unreachable")
    else:
        checks["database"] = "ok"
        checks["migrations"] = _migrations(found, problems)
    checks["redis"] = _redis(runtime, problems)
    if problems:
        raise ApiError(503, "; ".join(problems), code="unavailable",
                       details=[{"check": k, "status": v} for k, v in checks.items()])
    return {"status": "ready", "checks": checks}


def _migrations(found: frozenset[str], problems: list[str]) -> str:
    expected = code_heads()
    if found == expected:
        return "ok"
    if not found:
        problems.append("database has no migrations applied (run `claude-notify server migrate`)")
        return "missing"
    if found <= known_revisions():
        problems.append(f"database is behind on migrations (at {', '.join(sorted(found))}, "
                        f"this version needs {', '.join(sorted(expected))}): run "
                        "`claude-notify server migrate`")
        return "behind"
    # A revision this code has never heard of was written by a newer release: its migrate Job
    # runs before its pods start, and the old pods must keep serving until they are replaced
    # (migrations are additive), or a rolling update would take every replica out at once.
    return "ahead"


def _redis(runtime: Runtime, problems: list[str]) -> str:
    url = runtime.settings.redis_url
    if not url:
        return "not configured"
    import redis

    client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S,
                                  socket_connect_timeout=REDIS_TIMEOUT_S)
    try:
        client.ping()
    except redis.RedisError as exc:
        log.warning("readiness: Redis unreachable: %s", exc.__class__.__name__)
        problems.append("redis unreachable")
        return "unreachable"
    finally:
        client.close()
    return "ok"
