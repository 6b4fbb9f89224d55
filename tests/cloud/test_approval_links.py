"""Permission requests answered from an e-mailed link, through the real app, database (SQLite and
PostgreSQL), agent tunnel and SMTP server (aiosmtpd), with the Telegram stand-in beside it.

Attacks first: the mail's hostile command, a plain GET of the link (a mail scanner), a made-up
key, one approval's key on another, an id with no approval, a replayed key, an expired one, a
withdrawn request, a form from another site, a client guessing keys, an address that is not the
owner's own. Then the answer itself: the agent hears it, the Telegram card is edited, the audit
log says who. The page's script in a real browser is in ``test_web_browser_approval_links``."""

from __future__ import annotations

import hashlib
import html
import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cloud_kit import Account, Mailbox, mail_text, parse_mail, wait_for
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from standins.kit import provider_settings, telegram
from standins.telegram import TelegramStandIn
from test_approvals import SESSION, agent, ask, card, quiet
from tg_kit import Chat
from web_kit import browser_of

from claude_notify.cloud.server.relay import email_approvals
from claude_notify.cloud.server.relay.models import Approval, ApprovalLink, RelayAudit
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import utcnow

__all__ = ["telegram"]
HOSTILE = "echo \"</pre><script>alert('x')</script>\" && <b>rm</b> -rf 'build' & done"
LINK = re.compile(r"https://app\.example/approvals/([0-9a-f-]{36})/link#t=(cna_[A-Za-z0-9_-]+)")


@pytest.fixture
def settings(settings: Settings, telegram: TelegramStandIn) -> Settings:
    return settings.replace(**provider_settings(telegram=telegram.base_url))


@pytest.fixture
def owner(client: TestClient, make_user: Callable[..., Account],
          verified_email: Callable[[TestClient, Account, str], str]) -> Account:
    """A pro user whose own address is a confirmed e-mail channel, and nothing else."""
    user = make_user(plan="pro")
    verified_email(client, user, user.email)
    return user


def mails(box: Mailbox, address: str) -> list[Any]:
    """The approval cards mailed to ``address``, parsed."""
    return [parse_mail(m) for m in box.messages if address in m.rcpt_tos
            and str(parse_mail(m)["Subject"]).startswith("🔐")]


def mailed(box: Mailbox, address: str, n: int = 1) -> Any:
    """The ``n``-th approval card mailed to ``address``."""
    found = wait_for(lambda: len(mails(box, address)) >= n and mails(box, address),
                     what=f"{n} approval mail(s) to {address}")
    return found[n - 1]


def link_of(mail: Any) -> tuple[str, str]:
    """The approval id and the key of a mailed card's link (from its text part)."""
    text = str(mail.get_body(preferencelist=("plain",)).get_content())
    found = LINK.search(text)
    assert found, text
    return found.group(1), found.group(2)


def post(b: TestClient, approval_id: str, what: str, **fields: str) -> Any:
    return b.post(f"/app/approvals/{approval_id}/link/{what}", data=fields)


def state(runtime: Runtime, approval_id: str) -> str:
    with runtime.sessions() as session:
        row = session.get(Approval, uuid.UUID(approval_id))
        assert row is not None
        return row.state


def audit(runtime: Runtime, approval_id: str) -> list[tuple[str, str, str | None]]:
    with runtime.sessions() as session:
        return [(a.outcome, a.actor, a.reason) for a in session.scalars(
            select(RelayAudit).where(RelayAudit.command_id == uuid.UUID(approval_id))
            .order_by(RelayAudit.created_at))]


def refusals(runtime: Runtime, reason: str) -> float:
    return runtime.metrics.registry.get_sample_value(
        "claude_notify_approval_link_refusals_total", {"reason": reason}) or 0.0


def test_the_mail_shows_hostile_text_literally_and_keeps_only_the_keys_hash(
    client: TestClient, owner: Account, smtp_server: Mailbox, runtime: Runtime
) -> None:
    with agent(client, owner) as ws:
        asked = ask(ws, HOSTILE, suggestions=("Bash(rm:*) <i>",))
        mail = mailed(smtp_server, owner.email)
        quiet(ws)  # asked, not told "unavailable": the owner's own mailbox can answer
    approval_id, key = link_of(mail)
    assert approval_id == asked["id"]
    assert len(key) == 47 and key.startswith("cna_")
    text = str(mail.get_body(preferencelist=("plain",)).get_content())
    assert HOSTILE in text and "project · machine-1234" in text
    page = str(mail.get_body(preferencelist=("html",)).get_content())
    assert html.escape(HOSTILE) in page
    for raw in ("<script>", "</pre><script", "<b>rm", "<i>"):
        assert raw not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert f'href="https://app.example/approvals/{approval_id}/link#t={key}"' in page
    assert str(mail["Subject"]).startswith("🔐 Claude wants to use Bash: echo")
    assert "\n" not in str(mail["Subject"])
    with runtime.sessions() as session:
        link = session.get(ApprovalLink, uuid.UUID(approval_id))
        row = session.get(Approval, uuid.UUID(approval_id))
        assert link is not None and row is not None
        assert link.token_hash == hashlib.sha256(key.encode()).hexdigest()
        assert link.expires_at == row.expires_at and link.used_at is None


def test_only_the_owners_own_confirmed_address_gets_a_card(
    client: TestClient, make_user: Callable[..., Account], smtp_server: Mailbox,
    verified_email: Callable[[TestClient, Account, str], str], runtime: Runtime
) -> None:
    """A confirmed address that is not the account's (a team list, a colleague) would let its
    readers answer: it gets no card, and with nothing else to ask the hook is told at once."""
    user = make_user(plan="pro")
    verified_email(client, user, "team-list@example.com")
    with agent(client, user) as ws:
        asked = ask(ws)
        got = ws.receive_json()
        assert (got["id"], got["state"]) == (asked["id"], "unavailable")
    # Its own address added but not confirmed: still nobody.
    made = client.post("/v1/channels", json={"type": "email", "config": {"address": user.email}},
                       headers=user.headers)
    assert made.status_code == 201
    with agent(client, user) as ws:
        ask(ws)
        assert ws.receive_json()["state"] == "unavailable"
    assert mails(smtp_server, "team-list@example.com") == mails(smtp_server, user.email) == []


def test_a_plain_get_of_the_link_decides_and_shows_nothing(
    client: TestClient, owner: Account, smtp_server: Mailbox, runtime: Runtime
) -> None:
    with agent(client, owner) as ws:
        ask(ws, "make deploy")
        approval_id, key = link_of(mailed(smtp_server, owner.email))
        scanner = browser_of(client)
        # What a scanner opening the link sends (the fragment stays behind), with or without
        # the key pasted in where it does not belong.
        for url in (f"/app/approvals/{approval_id}/link",
                    f"/app/approvals/{approval_id}/link?t={key}",
                    f"/app/approvals/{uuid.uuid4()}/link"):
            page = scanner.get(url)
            assert page.status_code == 200
            assert "make deploy" not in page.text and key not in page.text
            assert '<script src="/app/static/approve.js" defer></script>' in page.text
            assert "script-src 'self'" in page.headers["content-security-policy"]
        assert scanner.get(f"/app/approvals/{approval_id}/link/answer").status_code == 405
        quiet(ws)
    assert state(runtime, approval_id) == "pending"


def test_a_wrong_key_another_approvals_key_and_no_such_approval_look_the_same(
    client: TestClient, owner: Account, smtp_server: Mailbox, runtime: Runtime
) -> None:
    with agent(client, owner) as ws:
        first = ask(ws, "make one")
        second = ask(ws, "make two")
        mailed(smtp_server, owner.email, 2)
        keys = dict(link_of(m) for m in mails(smtp_server, owner.email))
        b = browser_of(client)
        made_up = "cna_" + "A" * 43
        tries = [(first["id"], keys[second["id"]]),  # B's key on A
                 (second["id"], keys[first["id"]]),  # A's key on B
                 (first["id"], made_up), (first["id"], ""), (first["id"], keys[first["id"]][4:]),
                 (str(uuid.uuid4()), keys[first["id"]]),  # no such approval
                 ("not-a-uuid", keys[first["id"]])]
        answers = []
        for approval_id, key in tries:
            for what in ("card", "answer"):
                got = post(b, approval_id, what, token=key, answer="allow")
                answers.append((got.status_code, got.json()))
        assert {code for code, _ in answers} == {404}
        assert len({str(body) for _, body in answers}) == 1  # nothing tells them apart
        quiet(ws)
    assert state(runtime, first["id"]) == state(runtime, second["id"]) == "pending"
    assert refusals(runtime, "wrong") == len(answers)


def test_the_key_answers_once_the_agent_hears_it_and_the_telegram_card_is_edited(
    client: TestClient, owner: Account, smtp_server: Mailbox, runtime: Runtime,
    telegram: TelegramStandIn
) -> None:
    chat = Chat(client, owner, telegram)
    with agent(client, owner) as ws:
        asked = ask(ws, HOSTILE, suggestions=("Bash(rm:*)",))
        shown = card(telegram, chat)
        approval_id, key = link_of(mailed(smtp_server, owner.email))
        b = browser_of(client)
        got = post(b, approval_id, "card", token=key)
        assert got.status_code == 200
        assert got.json() == {
            "tool": "Bash", "kind": "tool", "title": "Claude wants to use Bash", "allow": "Allow",
            "deny": "Deny", "questions": [], "where": "project · machine-1234", "display": HOSTILE,
            "state": "pending", "said": "Waiting for an answer", "answerable": True,
            "until": got.json()["until"], "suggestion": "Bash(rm:*)", "note": None}
        assert post(b, approval_id, "answer", token=key, answer="maybe").status_code == 422
        quiet(ws)  # a malformed answer spends nothing

        done = post(b, approval_id, "answer", token=key, answer="session")
        assert (done.status_code, done.json()) == (200, {"state": "allowed",
                                                         "said": "Allowed for this session"})
        assert ws.receive_json() == {
            "type": "decision", "id": asked["id"], "state": "allowed", "digest": asked["digest"],
            "suggestion": 0, "note": None, "by": "an e-mail link", "detail": None}
        edited = wait_for(lambda: telegram.edits_of(chat.chat, shown["message_id"]),
                          what="the Telegram card to be edited")
        assert edited[-1]["text"].endswith("✅ Allowed for this session")

        again = post(b, approval_id, "answer", token=key, answer="deny")  # replayed
        assert (again.status_code, again.json()["problem"]) == (409, "Already answered.")
        shown_now = post(b, approval_id, "card", token=key).json()
        assert (shown_now["state"], shown_now["answerable"]) == ("allowed", False)
        quiet(ws)
    assert state(runtime, approval_id) == "allowed"
    assert audit(runtime, approval_id) == [
        ("asked", "agent", None), ("allowed", "email", None),
        ("refused", "email", "the e-mailed link was used already")]


def test_deny_with_a_note_reaches_claude_and_always_is_only_where_offered(
    client: TestClient, owner: Account, smtp_server: Mailbox, runtime: Runtime
) -> None:
    with agent(client, owner) as ws:
        asked = ask(ws, "git push --force")
        approval_id, key = link_of(mailed(smtp_server, owner.email))
        b = browser_of(client)
        assert post(b, approval_id, "card", token=key).json()["suggestion"] is None
        refused = post(b, approval_id, "answer", token=key, answer="session")
        assert refused.status_code == 422
        done = post(b, approval_id, "answer", token=key, answer="deny", note=" not today ")
        assert done.json() == {"state": "denied", "said": "Denied"}
        got = ws.receive_json()
        assert (got["id"], got["state"], got["note"], got["by"]) == (
            asked["id"], "denied", "not today", "an e-mail link")


def test_an_expired_key_is_refused_and_the_request_is_marked_expired(
    client: TestClient, owner: Account, smtp_server: Mailbox, runtime: Runtime
) -> None:
    with agent(client, owner) as ws:
        asked = ask(ws)
        approval_id, key = link_of(mailed(smtp_server, owner.email))
        past = utcnow() - timedelta(minutes=1)
        with runtime.sessions.begin() as session:
            session.execute(update(Approval).values(expires_at=past))
            session.execute(update(ApprovalLink).values(expires_at=past))
        b = browser_of(client)
        shown = post(b, approval_id, "card", token=key)
        assert shown.status_code == 410 and "display" not in shown.json()
        late = post(b, approval_id, "answer", token=key, answer="allow")
        assert (late.status_code, late.json()["problem"]) == (
            409, "Expired: answer in the terminal.")
        got = ws.receive_json()  # nobody had noticed: the agent hears it now
        assert (got["id"], got["state"]) == (asked["id"], "expired")
    assert state(runtime, approval_id) == "expired"
    with runtime.sessions() as session:
        link = session.get(ApprovalLink, uuid.UUID(approval_id))
        assert link is not None and link.used_at is None


def test_a_key_outliving_its_request_answers_nothing(
    client: TestClient, owner: Account, smtp_server: Mailbox, runtime: Runtime
) -> None:
    """The request expired (its hook gave up) while the key's row says otherwise: the
    conditional update on the request still refuses."""
    with agent(client, owner) as ws:
        ask(ws)
        approval_id, key = link_of(mailed(smtp_server, owner.email))
        with runtime.sessions.begin() as session:
            session.execute(update(Approval).values(expires_at=utcnow() - timedelta(minutes=1)))
        late = post(browser_of(client), approval_id, "answer", token=key, answer="allow")
        assert (late.status_code, late.json()["problem"]) == (
            409, "Expired: answer in the terminal.")
        assert ws.receive_json()["state"] == "expired"
    assert state(runtime, approval_id) == "expired"


def test_answered_in_the_terminal_first_a_press_is_told_so(
    client: TestClient, owner: Account, smtp_server: Mailbox, runtime: Runtime
) -> None:
    with agent(client, owner) as ws:
        asked = ask(ws)
        approval_id, key = link_of(mailed(smtp_server, owner.email))
        b = browser_of(client)
        assert post(b, approval_id, "card", token=key).json()["answerable"] is True
        ws.send_json({"type": "withdraw", "id": None, "session_id": SESSION,
                      "digest": asked["digest"], "reason": "terminal"})
        wait_for(lambda: state(runtime, approval_id) == "withdrawn", what="the withdrawal")
        late = post(b, approval_id, "answer", token=key, answer="allow")
        assert late.status_code == 409
        assert late.json() == {"problem": "Already answered.", "state": "withdrawn",
                               "said": "Answered in the terminal"}
        quiet(ws)
    assert state(runtime, approval_id) == "withdrawn"


def test_a_form_from_another_site_is_refused_even_with_the_key(
    client: TestClient, owner: Account, smtp_server: Mailbox, runtime: Runtime
) -> None:
    with agent(client, owner) as ws:
        ask(ws)
        approval_id, key = link_of(mailed(smtp_server, owner.email))
        b = browser_of(client)
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            got = b.post(f"/app/approvals/{approval_id}/link/answer",
                         data={"token": key, "answer": "allow"}, headers=headers)
            assert got.status_code == 403
        quiet(ws)
    assert state(runtime, approval_id) == "pending"


def test_guessing_keys_is_cut_off_per_client(
    client: TestClient, owner: Account, smtp_server: Mailbox, runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(email_approvals, "GUESSES_PER_IP_PER_HOUR", 3)
    with agent(client, owner) as ws:
        ask(ws)
        approval_id, key = link_of(mailed(smtp_server, owner.email))
        b = browser_of(client)
        for n in range(3):
            assert post(b, approval_id, "card", token=f"cna_guess{n:040d}").status_code == 404
        # Past the allowance even the right key is not read: a guess cannot be confirmed.
        for what in ("card", "answer"):
            got = post(b, approval_id, what, token=key, answer="allow")
            assert (got.status_code, got.headers["retry-after"]) == (429, "3600")
        quiet(ws)
    assert state(runtime, approval_id) == "pending"
    assert (refusals(runtime, "wrong"), refusals(runtime, "limited")) == (3.0, 2.0)


def test_a_second_request_gets_its_own_key_and_a_refiled_one_no_second_mail(
    client: TestClient, owner: Account, smtp_server: Mailbox
) -> None:
    with agent(client, owner) as ws:
        first = ask(ws, "make one")
        mailed(smtp_server, owner.email)
        ws.send_json(first)  # filed again (a reconnect): its card is out already
        ask(ws, "make two")
        mailed(smtp_server, owner.email, 2)
        quiet(ws)
    found = [link_of(m) for m in mails(smtp_server, owner.email)]
    assert len(found) == 2 and len({k for _, k in found}) == 2
    assert first["id"] in {a for a, _ in found}
    assert all("make" in mail_text(m) for m in smtp_server.messages
               if owner.email in m.rcpt_tos and "🔐" in str(parse_mail(m)["Subject"]))


def test_concurrent_answers_with_one_key_decide_once(
    client: TestClient, owner: Account, smtp_server: Mailbox, runtime: Runtime
) -> None:
    """Six answers with the same key at once (a double tap, a replay racing the owner): one
    spends it and decides, the others are refused; the agent hears one decision."""
    from concurrent.futures import ThreadPoolExecutor

    with agent(client, owner) as ws:
        asked = ask(ws)
        approval_id, key = link_of(mailed(smtp_server, owner.email))
        b = browser_of(client)
        with ThreadPoolExecutor(6) as pool:
            codes = sorted(pool.map(
                lambda n: post(b, approval_id, "answer", token=key,
                               answer="allow" if n % 2 else "deny").status_code, range(6)))
        assert codes == [200, 409, 409, 409, 409, 409]
        got = ws.receive_json()
        assert (got["id"], got["state"]) == (asked["id"], state(runtime, approval_id))
        quiet(ws)
    outcomes = [o for o, _, _ in audit(runtime, approval_id)]
    assert outcomes.count("refused") == 5 and len(outcomes) == 7


def test_a_key_is_masked_wherever_it_would_be_logged() -> None:
    from claude_notify.cloud.server.redact import redact

    key = "cna_" + "Ab3-_" * 8
    assert key not in redact(f"GET /app/approvals/x/link?t={key} failed")


def test_a_question_is_answered_by_its_options_and_a_wrong_answer_spends_nothing(
    client: TestClient, owner: Account, smtp_server: Mailbox, runtime: Runtime
) -> None:
    from test_approval_kinds import COLOR, TOPPINGS, file

    with agent(client, owner) as ws:
        asked = file(ws, "AskUserQuestion", "1. Which color?\n2. Which toppings?",
                     questions=[COLOR, TOPPINGS])
        approval_id, key = link_of(mailed(smtp_server, owner.email))
        b = browser_of(client)
        shown = post(b, approval_id, "card", token=key).json()
        assert (shown["kind"], shown["title"], shown["suggestion"]) == (
            "question", "Claude asks you 2 questions", None)
        assert [q["options"] for q in shown["questions"]] == [COLOR["options"],
                                                              TOPPINGS["options"]]
        for wrong in ({"answer": "allow"}, {"answer": "session"},
                      {"answer": "answer", "option": ["0:1"]},  # the second unanswered
                      {"answer": "answer", "option": ["0:0", "0:1", "1:0"]},  # two colors
                      {"answer": "answer", "option": ["0:2", "1:0"]}):  # no third color
            refused = b.post(f"/app/approvals/{approval_id}/link/answer",
                             data={"token": key, **wrong})
            assert refused.status_code == 422, wrong
        quiet(ws)
        assert state(runtime, approval_id) == "pending"  # and the key is still good:
        done = b.post(f"/app/approvals/{approval_id}/link/answer",
                      data={"token": key, "answer": "answer", "option": ["1:2", "0:1", "1:0"]})
        assert done.json() == {"state": "allowed", "said": "Answered: Blue <i>; Ham, Kale"}
        got = ws.receive_json()
        assert (got["id"], got["state"], got["answers"], got["by"]) == (
            asked["id"], "allowed", [[1], [0, 2]], "an e-mail link")


def test_a_plan_is_approved_in_its_own_words_and_never_always(
    client: TestClient, owner: Account, smtp_server: Mailbox, runtime: Runtime
) -> None:
    from test_approval_kinds import PLAN, file

    with agent(client, owner) as ws:
        file(ws, "ExitPlanMode", PLAN)
        approval_id, key = link_of(mailed(smtp_server, owner.email))
        b = browser_of(client)
        shown = post(b, approval_id, "card", token=key).json()
        assert (shown["kind"], shown["title"], shown["allow"], shown["deny"]) == (
            "plan", "Claude wants to start on this plan", "Approve plan", "Keep planning")
        assert shown["display"] == PLAN  # as text: the page puts it in with textContent
        for wrong in ("session", "answer"):
            assert post(b, approval_id, "answer", token=key, answer=wrong).status_code == 422
        done = post(b, approval_id, "answer", token=key, answer="allow")
        assert done.json() == {"state": "allowed", "said": "Plan approved"}
        assert ws.receive_json()["state"] == "allowed"
