"""A browser on the web app for TestClient tests: signing in through the mailed link, and the
form token its pages carry."""

from __future__ import annotations

import re

from cloud_kit import Mailbox, mail_text, wait_for
from fastapi.testclient import TestClient

LOCAL = "http://127.0.0.1:8000"


def browser_of(client: TestClient, base_url: str = LOCAL) -> TestClient:
    return TestClient(client.app, base_url=base_url, follow_redirects=False)


def signin_token(box: Mailbox, address: str, seen: int = 0) -> str:
    """The token of the newest sign-in link mailed to ``address`` (after ``seen`` of them)."""
    def mine() -> list[str]:  # sign-in mails only: an invite to the address may arrive between
        return [text for m in box.messages if address in m.rcpt_tos
                and "/app/signin/confirm?token=" in (text := mail_text(m))]

    wait_for(lambda: len(mine()) > seen, what=f"a sign-in mail to {address}")
    text = mine()[-1]
    link = next(w for w in text.split() if "/app/signin/confirm?token=" in w)
    return link.split("token=")[1]


def sign_in(b: TestClient, box: Mailbox, address: str) -> None:
    seen = sum(address in m.rcpt_tos and "/app/signin/confirm?token=" in mail_text(m)
               for m in box.messages)
    assert b.post("/app/signin", data={"email": address}).status_code == 200
    confirmed = b.post("/app/signin/confirm", data={"token": signin_token(box, address, seen)})
    assert confirmed.status_code == 303, confirmed.text
    assert b.get("/app/tasks").status_code == 200


def form_token(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)
