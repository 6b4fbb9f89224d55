"""The role matrix: the least role each route needs, in one table (``docs/teams.md`` shows it).

Every authenticated route is checked against it by the dependency that authenticates it
(:func:`~..api.deps.get_principal` for tokens, the web app's session dependency for pages; the
two routes that authenticate in their own body call :func:`check` too). ``create_app`` refuses
to start if any route is missing here, so a new route cannot forget it; ``PUBLIC`` routes need
no sign-in (sign-in itself, health, and webhooks that carry their own signature).

Some checks stay in the handlers because they depend on the row: a member changes only their
personal channels (shared ones need an admin, :func:`..channels.manage.owned`), and commands,
"Run again" and approvals go only to the machine of the person who sends them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from claude_notify.cloud.server.api.errors import ApiError
from claude_notify.cloud.server.db.models import ROLE_RANK, Role

PUBLIC: Final = "public"

_V, _M, _A, _O = Role.VIEWER, Role.MEMBER, Role.ADMIN, Role.OWNER

_PUBLIC_ROUTES: Final = (
    "GET /healthz", "GET /readyz", "GET /metrics", "POST /v1/auth/device", "GET /v1/auth/approve",
    "POST /v1/auth/approve", "POST /v1/auth/token", "GET /v1/verify", "POST /v1/telegram/webhook",
    "POST /v1/discord/interactions", "POST /v1/feishu/events", "POST /v1/slack/commands",
    "POST /v1/slack/interactions", "POST /v1/stripe/webhook", "GET /app", "GET /app/",
    "GET /app/signin", "POST /app/signin", "GET /app/signin/confirm", "POST /app/signin/confirm",
    "GET /app/signin/github", "GET /app/signin/github/callback", "GET /app/verify",
    "POST /app/verify", "GET /app/sw.js", "POST /app/reply", "GET /app/invite", "POST /app/invite",
    "GET /app/approvals/{approval_id}/link", "POST /app/approvals/{approval_id}/link/answer",
    "POST /app/approvals/{approval_id}/link/card",
)
"""No sign-in: sign-in itself, health, metrics, webhooks that carry their own signature, and
links whose secret is their key (a confirmation, an invite, an approval's e-mailed key)."""

ROLES: Final[dict[str, str]] = {
    # -- the API: reading --------------------------------------------------------------------
    "GET /v1/account": _V,
    "PATCH /v1/account": _V,  # their own time zone
    "GET /v1/tasks": _V,
    "GET /v1/tasks/{task_id}": _V,
    "GET /v1/tasks/{task_id}/log": _V,
    "GET /v1/notifications": _V,
    "GET /v1/notifications/{notification_id}": _V,
    "GET /v1/usage": _V,
    "GET /v1/workspace": _V,
    "GET /v1/workspace/members": _V,
    "GET /v1/workspaces": _V,
    "POST /v1/workspaces/{workspace_id}/token": _V,  # only into a workspace of theirs
    "POST /v1/workspace/leave": _V,
    "POST /v1/workspace/transfer/accept": _V,  # only the member it was offered to
    # -- the API: a member's machines, personal channels and relay ---------------------------
    "POST /v1/events": _M,
    "POST /v1/tasks": _M,
    "POST /v1/tasks/{task_id}/log": _M,
    "PUT /v1/tasks/{task_id}/log/digest": _M,
    "POST /v1/agents": _M,
    "GET /v1/audit": _M,
    "POST /v1/commands": _M,
    "GET /v1/commands/{command_id}": _M,
    "GET /v1/channels": _M,
    "POST /v1/channels": _M,
    "GET /v1/channels/{channel_id}": _M,
    "PATCH /v1/channels/{channel_id}": _M,
    "DELETE /v1/channels/{channel_id}": _M,
    "POST /v1/channels/{channel_id}/link": _M,
    "POST /v1/channels/{channel_id}/rotate-secret": _M,
    "PUT /v1/channels/{channel_id}/template": _M,
    "DELETE /v1/channels/{channel_id}/template": _M,
    "POST /v1/channels/{channel_id}/test": _M,
    "POST /v1/channels/{channel_id}/verification": _M,
    "POST /v1/channels/{channel_id}/verify": _M,
    "POST /v1/templates/preview": _M,
    "POST /v1/notifications/{notification_id}/replay": _M,
    # -- the API: running the workspace ------------------------------------------------------
    "GET /v1/workspace/invites": _A,
    "POST /v1/workspace/invites": _A,
    "DELETE /v1/workspace/invites/{invite_id}": _A,
    "PATCH /v1/workspace/members/{user_id}": _A,
    "DELETE /v1/workspace/members/{user_id}": _A,
    "GET /v1/workspace/activity": _A,
    "POST /v1/workspace/transfer": _O,
    "POST /v1/billing/checkout": _O,
    "POST /v1/billing/portal": _O,
    # -- the web app ------------------------------------------------------------------------
    "GET /app/tasks": _V,
    "GET /app/t/{key}": _V,
    "GET /app/t/{key}/log": _V,
    "GET /app/deliveries": _V,
    "GET /app/account": _V,
    "GET /app/account/export": _V,
    "POST /app/account/delete": _V,
    "POST /app/account/linked/{identity_id}/unlink": _V,
    "GET /app/access": _V,
    "POST /app/tokens": _V,
    "POST /app/tokens/{token_id}/revoke": _V,
    "GET /app/sessions": _V,
    "POST /app/sessions/{session_id}/revoke": _V,
    "POST /app/signout": _V,
    "GET /app/billing": _V,
    "GET /app/approvals/{approval_id}": _V,  # their own requests only
    "POST /app/approvals/{approval_id}": _V,
    "GET /app/workspace": _V,
    "POST /app/workspace/switch": _V,
    "POST /app/workspace/leave": _V,
    "POST /app/workspace/transfer/accept": _V,
    "POST /app/t/{key}/run": _M,
    "GET /app/channels": _M,
    "POST /app/channels": _M,
    "GET /app/channels/{channel_id}": _M,
    "POST /app/channels/{channel_id}/delete": _M,
    "POST /app/channels/{channel_id}/group-replies": _M,
    "POST /app/channels/{channel_id}/link": _M,
    "POST /app/channels/{channel_id}/resend": _M,
    "POST /app/channels/{channel_id}/rotate": _M,
    "POST /app/channels/{channel_id}/settings": _M,
    "POST /app/channels/{channel_id}/template": _M,
    "POST /app/channels/{channel_id}/template/preview": _M,
    "POST /app/channels/{channel_id}/test": _M,
    "POST /app/channels/{channel_id}/verify": _M,
    "POST /app/deliveries/{delivery_id}/replay": _M,
    "POST /app/push/subscribe": _M,
    "POST /app/workspace/invites": _A,
    "POST /app/workspace/invites/{invite_id}/revoke": _A,
    "POST /app/workspace/members/{user_id}/role": _A,
    "POST /app/workspace/members/{user_id}/remove": _A,
    "GET /app/workspace/activity": _A,
    "GET /app/workspace/activity.csv": _A,
    "POST /app/workspace/transfer": _O,
    "POST /app/billing/checkout": _O,
    "POST /app/billing/portal": _O,
    "GET /app/billing/success": _O,
    **dict.fromkeys(_PUBLIC_ROUTES, PUBLIC),
}
"""``"METHOD /path"`` → the least :class:`~..db.models.Role` it needs, or :data:`PUBLIC`."""

_SAY: Final[dict[str, str]] = {_M: "a member", _A: "an admin", _O: "the owner", _V: "a member"}


def key(method: str, path: str) -> str:
    return f"{method} {path}"


def required(method: str, path: str) -> str | None:
    """The least role ``METHOD path`` needs (``None``: a route the table forgot)."""
    return ROLES.get(key(method, path))


def check(role: str, scope: dict[str, Any] | Any) -> None:
    """Let the request in ``scope`` through only if ``role`` may use its route; a route the
    table does not know is refused too (never open by omission)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    wanted = required(scope.get("method", ""), path) if path else None
    if wanted is None:
        raise ApiError(403, "this route is not in the role table", code="role_refused")
    if wanted != PUBLIC and ROLE_RANK.get(role, -1) < ROLE_RANK[wanted]:
        raise ApiError(403, f"this needs {_SAY[wanted]} of the workspace (you are "
                            f"{role or 'not a member'})", code="role_refused")


def walk(routes: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every route of an app, with the prefix it is served under (FastAPI wraps included
    routers; mounts such as the static files and the API docs are not routes of ours)."""
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:
            yield from walk(original.routes, prefix + route.include_context.prefix)
        else:
            yield prefix, route


def missing(app: Any) -> list[str]:
    """The app's API routes that are not in :data:`ROLES`."""
    from fastapi.routing import APIRoute

    return sorted(key(method, prefix + route.path)
                  for prefix, route in walk(app.router.routes) if isinstance(route, APIRoute)
                  for method in route.methods or ()
                  if key(method, prefix + route.path) not in ROLES)
