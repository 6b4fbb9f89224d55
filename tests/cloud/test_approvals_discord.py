"""Permission requests as Discord cards, through the real app, database (SQLite and PostgreSQL)
and agent tunnel, the Discord stand-in as the owner's DM with the bot: the agent files an
approval over its WebSocket, the linked Discord account gets a card (a DM from the bot, checked
against Discord's documented limits), a press arrives as a signed ``MESSAGE_COMPONENT``
interaction and answers it over the same WebSocket, and the card shows the outcome.

Attacks first: a stranger's press (in a server's channel, or forged into the DM), the owner's
press outside the DM, forged signatures, a replayed press, a press after the terminal answered
or after expiry; then what the card shows of hostile input."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from chat_kit import DiscordApp, component_press
from cloud_kit import Account, wait_for
from fastapi.testclient import TestClient
from sqlalchemy import update
from standins.discord import BOT_TOKEN, DiscordStandIn
from standins.kit import APP_URL, discord, provider_settings
from test_approvals import SESSION, agent, ask, outcomes, quiet, rows
from test_relay_discord import OWNER, STRANGER, Linked, _client, _post

from claude_notify.cloud.server.relay.models import Approval
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import utcnow

__all__ = ["discord"]
GUILD_CHANNEL = "41771983423143938"


@pytest.fixture
def app_key() -> DiscordApp:
    return DiscordApp()


@pytest.fixture
def settings(settings: Settings, discord: DiscordStandIn, app_key: DiscordApp) -> Settings:
    return settings.replace(discord_public_key=app_key.public_key, discord_bot_token=BOT_TOKEN,
                            **provider_settings(discord=discord.base_url))


@pytest.fixture
def linked(client: TestClient, make_user: Callable[..., Account], app_key: DiscordApp,
           discord: DiscordStandIn) -> Linked:
    """A pro user whose only answering channel is a Discord account linked with /link."""
    made = Linked(client, make_user(plan="pro"), app_key, discord)
    assert made.link().startswith("Linked")
    return made


def card(discord: DiscordStandIn, runtime: Runtime, n: int = 1,
         user: str = OWNER) -> dict[str, Any]:
    """The ``n``-th card in the user's DM with the bot, as it shows now, once the server has
    recorded it (a press comes after that: a person takes longer than a test)."""
    shown: list[dict[str, Any]] = wait_for(
        lambda: len(m := discord.bot_messages(user)) >= n and m, what=f"{n} card(s) on Discord")
    wait_for(lambda: recorded(runtime, shown[n - 1]["id"]),
             what="the server to record the card")
    return shown[n - 1]


def recorded(runtime: Runtime, message_id: str) -> bool:
    return any(c.get("message") == message_id for row in rows(runtime) for c in row.cards or [])


def keys(message: dict[str, Any]) -> dict[str, str]:
    """A card's buttons: their custom_id, or for a link its URL."""
    return {b["label"]: b.get("custom_id") or b["url"]
            for row in message.get("components", []) for b in row["components"]}


def press(linked: Linked, message: dict[str, Any], button: str, *, user: str = OWNER,
          guild: bool = False, custom_id: str | None = None) -> dict[str, Any]:
    """Press a button of ``message`` as it was shown (signed as Discord signs it; the
    interaction carries the message as it is now); the interaction's response, applied to the
    card as Discord applies it. An ephemeral answer comes back as ``{"said": text}``."""
    payload = component_press(linked.standin.message(message["id"]),
                              custom_id or keys(message)[button], user_id=user,
                              guild=guild, channel_id=GUILD_CHANNEL if guild else None)
    answered = _post(linked.client, linked.app, payload)
    assert answered.status_code == 200, answered.text
    response: dict[str, Any] = answered.json()
    shown = linked.standin.apply(message["id"], response)
    if shown is not None:
        assert shown["flags"] == 64 and shown["allowed_mentions"] == {"parse": []}
        return {"said": shown["content"]}
    return response


def code_of(message: dict[str, Any]) -> str:
    """What the card's code block shows (zero-width spaces are invisible)."""
    description = message["embeds"][0]["description"]
    assert description.count("```") == 2, description  # one block, nothing left it
    return description.split("```\n", 1)[1].rsplit("\n```", 1)[0].replace("\u200b", "")


def test_a_strangers_press_is_refused_and_the_owners_answers_once(
    linked: Linked, discord: DiscordStandIn, runtime: Runtime
) -> None:
    with agent(linked.client, linked.user) as ws:
        asked = ask(ws, suggestions=("Bash(rm:*)",))
        shown = card(discord, runtime)
        ident = uuid.UUID(asked["id"]).hex
        assert keys(shown) == {"Allow": f"ap:{ident}:a", "Deny": f"ap:{ident}:d",
                               "Always in this session": f"ap:{ident}:s",
                               "Open": f"{APP_URL}/approvals/{asked['id']}"}
        embed = shown["embeds"][0]
        assert shown["content"] == "🔐 Claude wants to use Bash"
        assert code_of(shown) == "rm -rf build"
        assert embed["footer"]["text"] == "project · machine-1234"
        until = int(rows(runtime)[0].expires_at.timestamp())
        assert embed["description"].endswith(
            f"\nAnswer within 10 min (until <t:{until}:t>), or in the terminal.")
        assert embed["fields"] == [{"name": "Always in this session",
                                    "value": "```\nBash(rm:*)\n```"}]
        [sent] = [r for r in discord.accepted() if r.displayed.get("sent")]
        assert sent.json()["allowed_mentions"] == {"parse": []}

        # A stranger, in a server's channel or (forged) in the DM, and the owner outside it.
        refused = [press(linked, shown, "Allow", user=STRANGER, guild=True),
                   press(linked, shown, "Allow", user=STRANGER),
                   press(linked, shown, "Allow", guild=True)]
        assert refused == [
            {"said": "Not answered: only the account the owner linked can answer."}] * 2 + [
            {"said": "Not answered: answer on the request's own card, in the direct chat "
                     "with the bot."}]
        quiet(ws)  # nothing answered
        assert rows(runtime)[0].state == "pending"
        assert keys(discord.message(shown["id"])) == keys(shown)  # the card unchanged

        updated = press(linked, shown, "Allow")
        assert updated["type"] == 7  # UPDATE_MESSAGE: the card itself shows the outcome
        got = ws.receive_json()
        assert got == {"type": "decision", "id": asked["id"], "state": "allowed",
                       "digest": asked["digest"], "suggestion": None, "note": None,
                       "by": "Discord", "detail": None}
        now = discord.message(shown["id"])
        assert now["components"] == [] and now["embeds"][0]["description"].endswith(
            "**✅ Allowed**")
        assert code_of(now) == "rm -rf build"

        assert press(linked, shown, "Deny") == {"said": "Already answered."}
        quiet(ws)
    assert rows(runtime)[0].state == "allowed"
    assert outcomes(runtime) == [("asked", "agent"), ("refused", f"discord:{STRANGER}"),
                                 ("refused", f"discord:{STRANGER}"),
                                 ("refused", f"discord:{OWNER}"),
                                 ("allowed", f"discord:{OWNER}")]


def test_deny_and_always_answered_out_of_order(linked: Linked, discord: DiscordStandIn,
                                              runtime: Runtime) -> None:
    with agent(linked.client, linked.user) as ws:
        first = ask(ws, "make deploy")
        second = ask(ws, "git push --force", suggestions=("Bash(git push:*)",))
        card(discord, runtime, 2)
        by_code = {code_of(m): m for m in discord.bot_messages(OWNER)}
        assert "Always in this session" not in keys(by_code["make deploy"])
        assert press(linked, by_code["git push --force"], "Always in this session")["type"] == 7
        got = ws.receive_json()
        assert (got["id"], got["state"], got["suggestion"]) == (second["id"], "allowed", 0)
        assert discord.message(by_code["git push --force"]["id"])["embeds"][0][
            "description"].endswith("**✅ Allowed for this session**")
        assert press(linked, by_code["make deploy"], "Deny")["type"] == 7
        got = ws.receive_json()
        assert (got["id"], got["state"], got["digest"], got["by"]) == (
            first["id"], "denied", first["digest"], "Discord")
        # "Always" only where Claude offered it: forged onto the other card, it answers nothing.
        third = ask(ws, "ls")
        shown = card(discord, runtime, 3)
        forged = f"ap:{uuid.UUID(third['id']).hex}:s"
        assert press(linked, shown, "", custom_id=forged) == {
            "said": "Not offered for this request."}
        quiet(ws)


def test_a_replayed_press_changes_nothing(linked: Linked, discord: DiscordStandIn,
                                          runtime: Runtime) -> None:
    with agent(linked.client, linked.user) as ws:
        asked = ask(ws)
        shown = card(discord, runtime)
        payload = component_press(shown, keys(shown)["Allow"], user_id=OWNER)
        raw = json.dumps(payload).encode()
        signed = linked.app.headers(raw)  # one signed request, captured and sent again
        first = _post(linked.client, linked.app, payload, headers=signed, body=raw).json()
        assert first["type"] == 7
        assert ws.receive_json()["id"] == asked["id"]
        again = _post(linked.client, linked.app, payload, headers=signed, body=raw).json()
        assert again["data"]["content"] == "This interaction was already handled."
        # Discord's own second press (a new interaction) is told it was answered.
        assert press(linked, shown, "Deny") == {"said": "Already answered."}
        quiet(ws)
    assert [o for o in outcomes(runtime) if o[0] != "asked"] == [
        ("allowed", f"discord:{OWNER}")]


def test_forged_signatures_get_401_and_change_nothing(
    linked: Linked, discord: DiscordStandIn, runtime: Runtime
) -> None:
    with agent(linked.client, linked.user) as ws:
        ask(ws)
        shown = card(discord, runtime)
        payload = component_press(shown, keys(shown)["Allow"], user_id=OWNER)
        raw = json.dumps(payload).encode()
        good = linked.app.headers(raw)
        for headers in ({}, DiscordApp().headers(raw),
                        {**good, "X-Signature-Timestamp": str(int(
                            good["X-Signature-Timestamp"]) - 1)}):
            assert _post(linked.client, linked.app, payload,
                         headers=headers or {"Content-Type": "application/json"},
                         body=raw).status_code == 401
        denied = raw.replace(b":a\"", b":d\"")  # the owner's signed Allow, made a Deny
        assert denied != raw
        assert _post(linked.client, linked.app, payload, headers=good,
                     body=denied).status_code == 401
        quiet(ws)
        assert rows(runtime)[0].state == "pending"
        assert keys(discord.message(shown["id"])) == keys(shown)
    assert outcomes(runtime) == [("asked", "agent")]


def test_a_press_after_the_terminal_answered_is_told_so_and_the_card_shows_it(
    linked: Linked, discord: DiscordStandIn, runtime: Runtime
) -> None:
    with agent(linked.client, linked.user) as ws:
        asked = ask(ws)
        shown = card(discord, runtime)
        ws.send_json({"type": "withdraw", "id": None, "session_id": SESSION,
                      "digest": asked["digest"], "reason": "terminal"})
        edited = wait_for(lambda: discord.edits(shown["id"]), what="the card to be edited")
        assert edited[-1]["components"] == []
        assert edited[-1]["embeds"][0]["description"].endswith(
            "**↩️ Answered in the terminal**")
        assert press(linked, shown, "Allow") == {"said": "Already answered."}
        quiet(ws)  # no decision for a withdrawn approval
        assert len(discord.edits(shown["id"])) == 1  # the card showed it already
    assert rows(runtime)[0].state == "withdrawn"


def test_a_late_press_on_a_card_whose_edit_failed_has_it_edited(
    linked: Linked, discord: DiscordStandIn, runtime: Runtime
) -> None:
    with agent(linked.client, linked.user) as ws:
        asked = ask(ws)
        shown = card(discord, runtime)
        before = discord.count()
        discord.answer((500, {"message": "500: Internal Server Error", "code": 0}, {}))
        ws.send_json({"type": "withdraw", "id": asked["id"], "reason": "terminal"})
        discord.wait(before + 1)  # the edit, refused
        assert discord.edits(shown["id"]) == []
        assert press(linked, shown, "Allow") == {"said": "Already answered."}
        edited = wait_for(lambda: discord.edits(shown["id"]), what="the card to be edited")
        assert edited[-1]["components"] == []
        quiet(ws)


def test_an_expired_request_is_not_answered_by_a_press(
    linked: Linked, discord: DiscordStandIn, runtime: Runtime
) -> None:
    with agent(linked.client, linked.user) as ws:
        asked = ask(ws)
        shown = card(discord, runtime)
        with runtime.sessions.begin() as session:
            session.execute(update(Approval).values(expires_at=utcnow() - timedelta(seconds=1)))
        updated = press(linked, shown, "Allow")
        assert updated["type"] == 7
        assert discord.message(shown["id"])["embeds"][0]["description"].endswith(
            "**⌛ Expired — answer in the terminal**")
        got = ws.receive_json()
        assert (got["id"], got["state"]) == (asked["id"], "expired")


def test_the_card_shows_hostile_text_literally_and_pings_nobody(
    linked: Linked, discord: DiscordStandIn, runtime: Runtime
) -> None:
    hostile = ("echo '@everyone @here <@123> <@&456> <#789>' ``` **bold** [x](https://evil) "
               "`` ` ```` && ```\n```js\nalert(1)")
    with agent(linked.client, linked.user) as ws:
        ws.send_json({"type": "approval", "id": str(uuid.uuid4()), "session_id": SESSION,
                      "tool_use_id": None, "tool_name": "Bash <@123> **@everyone**",
                      "digest": "0" * 64, "display": hostile, "cwd": "/srv/<@&456> `x`",
                      "suggestions": ["Bash(```@everyone```)"], "timeout_s": 600})
        shown = card(discord, runtime)
        assert code_of(shown) == hostile
        assert shown["embeds"][0]["fields"][0]["value"].count("```") == 2
        [sent] = [r for r in discord.accepted() if r.displayed.get("sent")]
        assert sent.displayed["pings"] == [] and sent.json()["allowed_mentions"] == {
            "parse": []}
        # Outside the code block every Markdown or mention character is escaped.
        assert shown["content"] == r"🔐 Claude wants to use Bash \<\@123\> \*\*\@everyone\*\*"
        assert not re.search(r"(?<!\\)[<@*]", shown["content"].split("use ", 1)[1])
        assert shown["embeds"][0]["footer"]["text"] == "<@&456> `x` · machine-1234"  # plain
        assert press(linked, shown, "Deny")["type"] == 7
        assert code_of(discord.message(shown["id"])) == hostile
        ws.receive_json()


def test_a_dm_refused_by_discord_sends_nothing_and_the_request_waits(
    linked: Linked, discord: DiscordStandIn, runtime: Runtime
) -> None:
    discord.closed.add(OWNER)  # no server shared with the bot any more, or DMs off
    with agent(linked.client, linked.user) as ws:
        ask(ws)
        wait_for(lambda: [r for r in discord.requests if r.status == 403],
                 what="Discord to refuse the DM")
        quiet(ws)
    [row] = rows(runtime)
    assert (row.state, row.cards) == ("pending", None)


@contextlib.contextmanager
def _without(settings: Settings, **unset: None) -> Iterator[TestClient]:
    with _client(settings.replace(**unset)) as client:
        yield client


@pytest.mark.parametrize("unset", ["discord_bot_token", "discord_public_key"])
def test_without_the_bot_or_its_interactions_nobody_is_asked_on_discord(
    linked: Linked, settings: Settings, discord: DiscordStandIn, runtime: Runtime, unset: str
) -> None:
    with _without(settings, **{unset: None}) as other, agent(other, linked.user) as ws:
        asked = ask(ws)
        got = ws.receive_json()
        assert (got["id"], got["state"]) == (asked["id"], "unavailable")
        assert "Discord" in got["detail"]
    assert discord.bot_messages(OWNER) == [] and rows(runtime) == []


def test_a_plan_and_a_question_get_their_own_buttons_and_answers(
    linked: Linked, discord: DiscordStandIn, runtime: Runtime
) -> None:
    from test_approval_kinds import COLOR, PLAN, TOPPINGS, file

    with agent(linked.client, linked.user) as ws:
        plan = file(ws, "ExitPlanMode", PLAN, suggestions=("Bash(make:*)",))
        shown = card(discord, runtime)
        assert shown["content"] == "🔐 Claude wants to start on this plan"
        assert code_of(shown) == PLAN
        assert list(keys(shown)) == ["Approve plan", "Keep planning", "Open"]  # no "always"
        forged = f"ap:{uuid.UUID(plan['id']).hex}:s"
        assert press(linked, shown, "", custom_id=forged) == {
            "said": "Not offered for this request."}
        assert press(linked, shown, "Approve plan")["type"] == 7
        got = ws.receive_json()
        assert (got["id"], got["state"], got["suggestion"]) == (plan["id"], "allowed", None)
        assert discord.message(shown["id"])["embeds"][0]["description"].endswith(
            "**✅ Plan approved**")

        asked = file(ws, "AskUserQuestion", "[Color] Which color?\n  1) Red\n  2) Blue <i>",
                     questions=[COLOR])
        shown = card(discord, runtime, 2)
        assert list(keys(shown)) == ["Red", "Blue <i>", "Don't answer", "Open"]
        ident = uuid.UUID(asked["id"]).hex
        for data, said in ((f"ap:{ident}:a", "Not answered: choose one of the options."),
                           (f"ap:{ident}:o3", "Not answered: not an option of this question."),
                           (f"ap:{ident}:n", "Not answered: this is not a permission request.")):
            assert press(linked, shown, "", custom_id=data) == {"said": said}
        quiet(ws)
        assert press(linked, shown, "Blue <i>")["type"] == 7
        got = ws.receive_json()
        assert (got["id"], got["state"], got["answers"]) == (asked["id"], "allowed", [[1]])
        assert discord.message(shown["id"])["embeds"][0]["description"].endswith(
            r"**✅ Answered\: Blue \<i\>**")

        several = file(ws, "AskUserQuestion", "two questions", questions=[COLOR, TOPPINGS])
        shown = card(discord, runtime, 3)
        assert list(keys(shown)) == ["Don't answer", "Open"]  # answered on the web page
        assert "Answer on the web page (Open)" in shown["embeds"][0]["description"]
        assert press(linked, shown, "Don't answer")["type"] == 7
        got = ws.receive_json()
        assert (got["id"], got["state"], got.get("answers")) == (several["id"], "denied", None)
