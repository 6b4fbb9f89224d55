"""Teams for tests: people invited into an owner's workspace through the mailed link."""

from __future__ import annotations

import re
import uuid

from cloud_kit import Account
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from web_kit import browser_of, form_token

from claude_notify.cloud.server.auth import ACCOUNT_SCOPES
from claude_notify.cloud.server.db.models import Delivery


def invite_secret(client: TestClient, email: str) -> str:
    """The token of the newest invite link mailed to ``email``, read from the mail queued for
    it (the inviter is never shown the link: it signs in as the invited address)."""
    with client.app.state.runtime.sessions() as db:
        return queued_invite_secret(db, email)


def queued_invite_secret(db: Session, email: str) -> str:
    """:func:`invite_secret` in a session of the caller's (one that may not have committed)."""
    payloads = db.scalars(select(Delivery.payload).where(Delivery.kind == "invite")
                          .order_by(Delivery.created_at.desc()))
    text = next(p["text"] for p in payloads if p and p.get("to") == email.lower())
    found = re.search(r"/app/invite\?token=(cni_[A-Za-z0-9_-]+)", text)
    assert found, text
    return found.group(1)


def join(client: TestClient, owner: Account, email: str, role: str = "member") -> Account:
    """``email`` invited by ``owner`` and joined through the link, with an API token acting in
    the team workspace (made on the web app's token page, as a person would)."""
    made = client.post("/v1/workspace/invites", headers=owner.headers,
                       json={"email": email, "role": role})
    assert made.status_code == 201, made.text
    b = browser_of(client)
    joined = b.post("/app/invite", data={"token": invite_secret(client, email)})
    assert joined.status_code == 303, joined.text
    page = b.post("/app/tokens", data={"csrf": form_token(b.get("/app/access").text),
                                       "name": "laptop", "scope": list(ACCOUNT_SCOPES)})
    assert page.status_code == 201, page.text
    found = re.search(r"cnt_[A-Za-z0-9_-]+", page.text)
    assert found, page.text
    headers = {"Authorization": f"Bearer {found.group(0)}"}
    me = client.get("/v1/account", headers=headers)
    assert (me.json()["role"], me.json()["workspace_id"]) == (role, str(owner.user_id)), me.text
    [user_id] = [m["user_id"] for m in client.get("/v1/workspace/members", headers=headers).json()
                 if m["email"] == email]
    return Account(email, found.group(0), uuid.UUID(user_id))
