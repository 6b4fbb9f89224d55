"""E-mail sign-in as a device-code flow: the CLI waits, the owner confirms the e-mailed link."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from cloud_kit import Account, Mailbox, mail_text
from fastapi.testclient import TestClient


def start(client: TestClient, email: str, **extra: Any) -> Any:
    return client.post("/v1/auth/device", json={"email": email, **extra})


def approve(client: TestClient, token: str, code: str) -> Any:
    return client.post("/v1/auth/approve", data={"token": token, "code": code})


def link_token(box: Mailbox, index: int, machine: str = "") -> str:
    """The approval link in the ``index``-th mail, or, given ``machine``, in the one that names
    it: the outbox may send two sign-in mails in either order."""
    mails = [mail_text(m) for m in box.wait(index + 1)]
    text = next(t for t in mails if f'calls itself "{machine}"' in t) if machine else mails[index]
    link = next(word for word in text.split() if "/v1/auth/approve?token=" in word)
    return link.split("token=")[1]


def test_sign_up_by_link_gives_the_waiting_cli_a_scoped_token(
    client: TestClient, smtp_server: Mailbox
) -> None:
    started = start(client, "New.Person@Example.com")
    assert started.status_code == 200, started.text
    device = started.json()["device_code"]
    pending = client.post("/v1/auth/token", json={"device_code": device})
    assert (pending.status_code, pending.json()["error"]["code"]) == (400, "authorization_pending")

    token = link_token(smtp_server, 0)
    assert smtp_server.messages[0].rcpt_tos == ["new.person@example.com"]
    page = client.get("/v1/auth/approve", params={"token": token})
    assert page.status_code == 200 and "new.person@example.com" in page.text
    # Opening the link is not enough: a mail scanner fetching it signs nobody in.
    still = client.post("/v1/auth/token", json={"device_code": device})
    assert still.json()["error"]["code"] == "authorization_pending"
    assert approve(client, token, started.json()["user_code"]).status_code == 200

    got = client.post("/v1/auth/token", json={"device_code": device})
    assert got.status_code == 200, got.text
    body = got.json()
    assert (body["email"], body["scopes"]) == ("new.person@example.com", ["events:write"])
    headers = {"Authorization": f"Bearer {body['token']}"}
    event = {"type": "finished", "source": "run", "task_id": "t", "machine_id": "m"}
    assert client.post("/v1/events", json=event, headers=headers).status_code == 202
    assert client.get("/v1/tasks", headers=headers).status_code == 403  # only events:write

    again = client.post("/v1/auth/token", json={"device_code": device})
    assert again.json()["error"]["code"] == "expired_token"
    assert client.get("/v1/auth/approve", params={"token": token}).status_code == 404


def test_sign_in_reaches_the_existing_account(
    client: TestClient, smtp_server: Mailbox, make_user: Callable[..., Account]
) -> None:
    existing = make_user(email="known@example.com", plan="pro")
    device = start(client, "KNOWN@example.com", scopes=["events:write", "tasks:read"]).json()
    approve(client, link_token(smtp_server, 0), device["user_code"])
    token = client.post("/v1/auth/token", json={"device_code": device["device_code"]}).json()
    usage = client.get("/v1/usage", headers={"Authorization": f"Bearer {token['token']}"})
    assert usage.json()["plan"] == "pro"
    assert existing.email == "known@example.com"


def test_sign_in_requests_are_rate_limited_and_validated(
    client: TestClient, smtp_server: Mailbox
) -> None:
    for _ in range(5):
        assert start(client, "flood@example.com").status_code == 200
    limited = start(client, "flood@example.com")
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "3600"
    for i in range(15):  # the same client IP, other addresses: 20 an hour in all
        assert start(client, f"other{i}@example.com").status_code == 200
    assert start(client, "fresh@example.com").status_code == 429
    assert start(client, "not-an-address").status_code == 422
    assert client.post("/v1/auth/token", json={"device_code": "guess"}).status_code == 400


def test_sign_in_cannot_grant_relay_or_admin(client: TestClient) -> None:
    refused = start(client, "sneaky@example.com", scopes=["admin"])
    assert refused.status_code == 422
    assert "admin" in refused.json()["error"]["message"]


HOSTILE = "<script>alert(1)</script>\u202e'\"&"


def test_the_approval_shows_who_asked_escaped_and_wants_the_clis_code(
    client: TestClient, smtp_server: Mailbox
) -> None:
    """Someone else can ask for a sign-in with your address; the page and the e-mail say who
    (client IP, machine name, scopes) and only the code printed in the asking terminal
    approves it, so a click on a stranger's request signs nobody in."""
    started = start(client, "owner@example.com", machine=HOSTILE,
                    scopes=["events:write", "tasks:read"]).json()
    code = started["user_code"]
    assert re.fullmatch(r"[B-DF-HJ-NP-TV-XZ]{4}-[B-DF-HJ-NP-TV-XZ]{4}", code), code
    mail = mail_text(smtp_server.wait(1)[0])
    assert "testclient" in mail and "events:write, tasks:read" in mail
    assert code not in mail  # the code is what the e-mail's reader must bring
    token = link_token(smtp_server, 0)
    page = client.get("/v1/auth/approve", params={"token": token}).text
    assert "testclient" in page and "events:write, tasks:read" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert "\u202e" not in page  # a control character could reorder what the owner reads
    assert code not in page and "name='code'" in page

    assert client.post("/v1/auth/approve", data={"token": token}).status_code == 422
    wrong = approve(client, token, "BBBB-BBBB" if code != "BBBB-BBBB" else "CCCC-CCCC")
    assert wrong.status_code == 400 and "code" in wrong.text
    pending = client.post("/v1/auth/token", json={"device_code": started["device_code"]})
    assert pending.json()["error"]["code"] == "authorization_pending"
    assert approve(client, token, " " + code.lower().replace("-", " ") + " ").status_code == 200
    got = client.post("/v1/auth/token", json={"device_code": started["device_code"]})
    assert got.status_code == 200, got.text


def test_five_wrong_codes_cancel_that_request_only(
    client: TestClient, smtp_server: Mailbox
) -> None:
    first = start(client, "owner@example.com", machine="first").json()
    second = start(client, "owner@example.com", machine="second").json()
    token = link_token(smtp_server, 1, machine="first")
    for left in (4, 3, 2, 1):
        wrong = approve(client, token, "ZZZZ-ZZZZ")
        assert wrong.status_code == 400 and f"{left} tries left" in wrong.text
    assert approve(client, token, "ZZZZ-ZZZZ").status_code == 403
    assert approve(client, token, first["user_code"]).status_code == 404
    gone = client.post("/v1/auth/token", json={"device_code": first["device_code"]})
    assert gone.json()["error"]["code"] == "expired_token"
    other = link_token(smtp_server, 1, machine="second")
    assert approve(client, other, second["user_code"]).status_code == 200


def test_a_stranger_flooding_an_address_does_not_lock_its_owner_out(
    client: TestClient, smtp_server: Mailbox
) -> None:
    stranger = TestClient(client.app, client=("203.0.113.66", 40000))  # the app runs already
    for _ in range(5):
        assert start(stranger, "owner@example.com").status_code == 200
    assert start(stranger, "owner@example.com").status_code == 429
    owner = TestClient(client.app, client=("198.51.100.7", 40000))
    assert start(owner, "owner@example.com").status_code == 200
