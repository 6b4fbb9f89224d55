"""``/healthz``: the process answers and its database does."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from claude_notify.cloud.server.api.deps import SessionDep
from claude_notify.cloud.server.api.errors import ApiError

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness and database reachability")
def healthz(session: SessionDep) -> dict[str, str]:
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        raise ApiError(503, "database unreachable", code="unavailable") from None
    return {"status": "ok"}
