"""Push to this device: the service worker, and the subscription "Enable notifications" saves.

The worker is served at ``/app/sw.js``, not under ``/app/static/``: a service worker controls
only the paths under its own, and it must cover every page of the app. The subscription a
browser made (``static/push.js``) arrives as a form with the session's form token and becomes a
``webpush`` channel through :mod:`~claude_notify.cloud.server.channels.manage`, the API's own
rules (plan, the channel limit, the URL's checks). The same browser subscribing again updates
its channel instead of adding one.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from sqlalchemy import select

from claude_notify.cloud.server.api.deps import RuntimeDep, SessionDep
from claude_notify.cloud.server.api.errors import ApiError
from claude_notify.cloud.server.channels import manage
from claude_notify.cloud.server.db.models import Channel
from claude_notify.cloud.server.web import security
from claude_notify.cloud.server.web.pages import HERE, WebDep, router, seat_of

_PLATFORMS = (("Android", "Android"), ("iPhone", "iPhone"), ("iPad", "iPad"),
              ("Windows", "Windows"), ("Mac OS", "Mac"), ("Linux", "Linux"))
_BROWSERS = (("Edg/", "Edge"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"),
             ("Safari/", "Safari"))


def device_name(user_agent: str) -> str:
    """A name for the channel a person can recognise in the list: "Chrome on Android"."""
    browser = next((name for mark, name in _BROWSERS if mark in user_agent), "browser")
    platform = next((name for mark, name in _PLATFORMS if mark in user_agent), "")
    return f"{browser} on {platform}" if platform else browser


@router.get("/sw.js")
def service_worker() -> Response:
    return FileResponse(HERE / "static" / "sw.js", media_type="text/javascript")


@router.post("/push/subscribe")
def subscribe(request: Request, web: WebDep, db: SessionDep, runtime: RuntimeDep,
              csrf: Annotated[str, Form(max_length=100)] = "",
              endpoint: Annotated[str, Form(max_length=2048)] = "",
              p256dh: Annotated[str, Form(max_length=100)] = "",
              auth: Annotated[str, Form(max_length=50)] = "") -> Response:
    """Save this browser's subscription as a channel; answers where its page is (JSON: the
    script that posts here reads it)."""
    security.check_form(request, runtime.settings, web, csrf)
    user = seat_of(db, web)
    if not runtime.settings.vapid_private_key:
        return JSONResponse({"error": "this server does not send push notifications"}, 404)
    config = {"endpoint": endpoint.strip(), "p256dh": p256dh.strip(), "auth": auth.strip()}
    same = next((c for c in db.scalars(select(Channel).where(
        Channel.user_id == user.user_id, Channel.workspace_id == user.workspace_id,
        Channel.type == "webpush"))
        if c.config.get("endpoint") == config["endpoint"]), None)
    try:
        if same is not None:
            channel = manage.update(db, runtime, same, config=config, enabled=True)
        else:
            name = device_name(request.headers.get("user-agent") or "")
            channel = manage.create(db, runtime, who=user, kind="webpush",
                                    name=re.sub(r"\s+", " ", name)[:100], config=config,
                                    rules_={"on": ["finished", "needs_input"]}, personal=True)
    except ApiError as exc:
        db.rollback()
        return JSONResponse({"error": exc.message}, exc.status)
    return JSONResponse({"channel": f"/app/channels/{channel.id}"},
                        200 if same is not None else 201)
