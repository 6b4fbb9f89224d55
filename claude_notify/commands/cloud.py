"""The opt-in cloud from the terminal: login, logout, whoami, status, sync, usage, channels,
upgrade and billing.

Every ``channels`` subcommand that takes a channel id takes a unique prefix of it too.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any

import click

from claude_notify.errors import CloudError, Refused, Unauthorized, UsageError, WrongRegion

LOGIN_SCOPES = ("events:write", "tasks:read")
"""What a machine needs: send its events, read its own tasks and quota."""
MANAGE_SCOPES = (*LOGIN_SCOPES, "channels:write")


def _client(*, timeout: float = 10.0) -> Any:
    from claude_notify.cloud import account
    from claude_notify.cloud.client import CloudClient

    who = account.current()
    if who is None:
        raise CloudError("not logged in: run `claude-notify login`")
    return CloudClient(who.server, account.token(who), timeout=timeout)


@click.command(short_help="Sign this machine in to the hosted backend.")
@click.option("--email", metavar="ADDRESS", help="Sign in by a link e-mailed to ADDRESS.")
@click.option("--token", "token_opt", is_flag=False, flag_value="", default=None,
              metavar="[TOKEN]",
              help="Use a token an operator issued; without a value it is read from stdin or "
                   "asked for without echo (better: a token in argv lands in shell history).")
@click.option("--server", metavar="URL", help="The backend (https://, or http:// to loopback).")
@click.option("--manage", is_flag=True, help="Also allow managing channels from this machine.")
@click.option("--workspace", "workspace_ref", metavar="NAME-OR-ID",
              help="Act in this workspace of yours (default: your personal one).")
def login(email: str | None, token_opt: str | None, server: str | None, manage: bool,
          workspace_ref: str | None) -> None:
    """Forward this machine's task events to the hosted backend, which notifies your phone.

    Without login nothing leaves the machine. The token is kept in the OS keyring (or, where
    there is none, in a file only you can read). With --workspace, the machine then acts in
    that workspace (see `claude-notify workspace list`).
    """
    from claude_notify.cloud import account
    from claude_notify.cloud.client import CloudClient

    url = account.check_server_url(server or _default_server())
    if token_opt is not None:
        secret = token_opt.strip() or (
            sys.stdin.readline() if not sys.stdin.isatty()
            else click.prompt("Token", hide_input=True, err=True)).strip()
        if not secret:
            raise UsageError("no token given")
        with CloudClient(url, secret) as client:
            try:
                usage = client.request("GET", "/v1/usage")
                who = f"{usage['plan']} plan"
            except Refused as exc:
                if exc.status != 403:
                    raise
                who = "a token that can only send events"
        saved = account.save(account.Account(url, "", "keyring"), secret)
        click.echo(f"logged in to {url} with {who} (token kept in the {saved.storage})")
        _then_switch(workspace_ref)
        return
    if not email:
        email = click.prompt("E-mail address", err=True).strip()
    scopes = list(MANAGE_SCOPES if manage else LOGIN_SCOPES)
    ask = {"email": email, "scopes": scopes, "machine": _machine_name()}
    try:
        with CloudClient(url, None) as client:
            started = client.request("POST", "/v1/auth/device", json=ask)
    except WrongRegion as exc:
        # Data residency: the account lives on another region's server. Followed once (a
        # second region saying the same is a misconfiguration, reported as it is).
        url = account.check_server_url(exc.server)
        click.echo(f"{email}'s account is in region {exc.region}: signing in at {url}", err=True)
        with CloudClient(url, None) as client:
            started = client.request("POST", "/v1/auth/device", json=ask)
    with CloudClient(url, None) as client:
        result = _wait_for_link(client, started, email)
    saved = account.save(account.Account(url, result["email"], "keyring",
                                         tuple(result.get("scopes", scopes))), result["token"])
    click.echo(f"logged in to {url} as {result['email']} (token kept in the {saved.storage})")
    _then_switch(workspace_ref)


def _then_switch(given: str | None) -> None:
    """After a login, act in the workspace ``given`` names; a failure leaves the login as it
    is (in the personal workspace) and says so."""
    if given is None:
        return
    from claude_notify.commands.workspace import switch_to
    from claude_notify.render import printable

    try:
        with _client() as client:
            target, _ = switch_to(client, given)
    except CloudError as exc:
        raise CloudError(f"logged in, but still in the workspace the token was made for: "
                         f"{exc}") from None
    except UsageError as exc:
        raise UsageError(f"logged in, but still in the workspace the token was made for: "
                         f"{exc}") from None
    click.echo(f"acting in workspace {printable(str(target.get('name', '')))} "
               f"({printable(str(target.get('role', '')))})")


def _wait_for_link(client: Any, started: dict[str, Any], email: str) -> dict[str, Any]:
    deadline = time.monotonic() + float(started.get("expires_in", 900))
    interval = max(0.2, float(started.get("interval", 2)))
    live = sys.stderr.isatty()
    click.echo(f"We e-mailed a sign-in link to {email}. Open it and type this code to finish: "
               f"{started.get('user_code', '')}", err=True)
    click.echo("Waiting…", err=True)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise CloudError("the sign-in link expired: run `claude-notify login` again")
        if live:
            click.echo(f"\r  {int(left) // 60:02d}:{int(left) % 60:02d} left ", err=True,
                       nl=False)
        try:
            result: dict[str, Any] = client.request(
                "POST", "/v1/auth/token", json={"device_code": started["device_code"]})
        except Refused as exc:
            if not str(exc).startswith("waiting for"):  # else the mail failed, or expired
                raise
            time.sleep(min(interval, max(left, 0)))  # the server's polling interval
            continue
        if live:
            click.echo("", err=True)
        return result


def _machine_name() -> str:
    """What the approval page shows as the asking machine (the owner compares it)."""
    import socket

    return socket.gethostname()[:200]


def _default_server() -> str:
    import os

    from claude_notify.cloud.account import DEFAULT_SERVER

    return os.environ.get("CLAUDE_NOTIFY_SERVER") or DEFAULT_SERVER


@click.command(short_help="Forget this machine's login.")
def logout() -> None:
    """Remove the token and stop forwarding (spooled events stay until the next login)."""
    from claude_notify.cloud import account

    gone = account.forget()
    click.echo(f"logged out of {gone.server}" if gone else "was not logged in")


@click.command(short_help="The account, its plan and today's quota.")
def whoami() -> None:
    """Who this machine is logged in as, and today's quota."""
    from claude_notify.cloud import account
    from claude_notify.render import printable

    who = account.current()
    with _client() as client:
        usage = client.request("GET", "/v1/usage")
        try:
            here: dict[str, Any] | None = client.request("GET", "/v1/workspace")
        except Refused as exc:
            if exc.status not in (403, 404):  # 404: a server from before workspaces
                raise
            here = None
    name = usage.get("email") or (who.email if who and who.email else "(token login)")
    click.echo(f"{printable(str(name))} on {client.server}: {printable(str(usage['plan']))} plan")
    if here is not None:
        click.echo(f"workspace {printable(str(here.get('name', '')))}, role "
                   f"{printable(str(here.get('role', '')))} "
                   f"({here.get('members', '?')} of {here.get('seats', '?')} seats; "
                   f"id {printable(str(here.get('id', '')))})")
    click.echo(_quota_line(usage))


def _quota_line(usage: dict[str, Any]) -> str:
    limit = usage.get("notifications_limit")
    sent = usage.get("notifications_sent", 0)
    line = f"today ({usage.get('day')}, {usage.get('timezone')}): {sent} notification(s) sent"
    line += f" of {limit}" if limit is not None else " (unlimited)"
    if usage.get("sms_limit"):
        line += f"; SMS {usage.get('sms_sent', 0)} of {usage['sms_limit']}"
    return line + f"; channels: {', '.join(usage.get('channels_allowed', []))}"


@click.command(short_help="Today's quota use.")
def usage() -> None:
    """Notifications sent today against the plan's limits."""
    with _client() as client:
        click.echo(_quota_line(client.request("GET", "/v1/usage")))


@click.command(short_help="The server, the connection and the spool.")
def status() -> None:
    """Whether this machine forwards events, whether the server answers, what is spooled."""
    from claude_notify.cloud import account, spool

    who = account.current()
    waiting, dead = len(spool.pending()), spool.dead_count()
    if who is None:
        click.echo("not logged in: nothing leaves this machine")
    else:
        click.echo(f"server     {who.server}")
        click.echo(f"account    {who.email or '(token login)'}; token in the {who.storage}")
        click.echo(f"connection {_connection(who)}")
    click.echo(f"spool      {waiting} waiting, {dead} refused (in {spool.spool_dir()})")


def _connection(who: Any) -> str:
    """Whether the server answers and still takes this machine's token (a revoked one must not
    read as "ok": every event would wait in the spool)."""
    from claude_notify.cloud import account
    from claude_notify.cloud.client import CloudClient

    health = None
    try:
        with CloudClient(who.server, None, timeout=5.0) as client:
            health = client.request("GET", "/healthz")
        with CloudClient(who.server, account.token(who), timeout=5.0) as client:
            client.request("GET", "/v1/account")
    except Unauthorized:
        again = f"claude-notify login --server {who.server}"
        again += f" --email {who.email}" if who.email else " --token"
        return (f"the server refused this machine's token (revoked or expired): "
                f"run `{again}` to sign in again")
    except Refused as exc:
        if exc.status != 403:  # 403: a token that may only send events, which it does
            return str(exc)
    except CloudError as exc:
        return str(exc)
    return f"ok ({health.get('status', 'ok') if health else 'ok'})"


@click.command(short_help="Send what the spool holds now.")
def sync() -> None:
    """Send spooled events now (normally done in the background after each task)."""
    from claude_notify.cloud import spool
    from claude_notify.cloud.sync import drain

    report = drain()
    click.echo(f"sent {report.sent}, refused {report.refused}, {report.left} still waiting")
    # Whatever was set aside since the user was last told (by this run or a background one),
    # then, every time, how many wait in dead/ and where.
    for name, reason in spool.take_unreported():
        click.echo(f"set aside {name} ({reason})")
    if dead := spool.dead_count():
        click.echo(f"{dead} set aside in {spool.dead_dir()}: the reason is beside each "
                   "(NAME.reason); delete them once read")
    if report.problem:
        raise CloudError(report.problem)


@click.group(short_help="List, add, remove and test cloud channels.")
def channels() -> None:
    """Where the backend sends notifications: e-mail, Telegram, Discord, Feishu, SMS, webhooks."""


@channels.command(name="list")
@click.option("--json", "as_json", is_flag=True)
def list_(as_json: bool) -> None:
    """Your channels and their rules."""
    with _client() as client:
        items = client.request("GET", "/v1/channels")
    items = items.get("items", items) if isinstance(items, dict) else items
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    for ch in items:
        state = "ok" if ch.get("enabled") and ch.get("verified") else (
            "unverified" if not ch.get("verified") else f"off: {ch.get('disabled_reason')}")
        rules = ",".join(ch.get("rules", {}).get("on", []))
        click.echo(f"{ch['id']}  {ch['type']:<8} {ch.get('name') or '':<16} {state:<12} {rules}")


_KEYS = {"email": "address", "discord": "webhook_url", "feishu": "webhook_url",
         "slack": "webhook_url", "ntfy": "url", "teams": "webhook_url",
         "sms": "number", "whatsapp": "number", "webhook": "url"}
"""The one user-level value each type holds (a Telegram chat is linked, not typed)."""


@channels.command()
@click.argument("channel_type", metavar="TYPE")
@click.argument("target", required=False)
@click.option("--name", default="", help="A name to tell channels apart.")
@click.option("--secret", help="Feishu signing secret, or an ntfy topic's access token.")
@click.option("--on", "on", default="finished", show_default=True,
              help="When it fires: finished, failure, match, needs_input, progress (comma list).")
@click.option("--regex", help="With --on match: the output regex.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="A config value of a plugin's channel type (repeatable).")
def add(channel_type: str, target: str | None, name: str, secret: str | None, on: str,
        regex: str | None, settings: tuple[str, ...]) -> None:
    """Add a channel: TYPE is email, telegram, discord, feishu, slack, teams, ntfy, sms, whatsapp
    or webhook; TARGET is the address, webhook or topic URL, or number (a Telegram chat is
    linked by a code sent to the bot). A type a server plugin adds takes its config as
    --set KEY=VALUE."""
    kind = channel_type.lower()
    key = _KEYS.get(kind)
    if kind not in _KEYS and kind not in ("telegram", "tg"):
        if not settings or target:  # a plugin's type: the server says whether it exists
            raise UsageError(f"unknown channel type {channel_type!r} "
                             f"(choose from {', '.join(sorted([*_KEYS, 'telegram']))}; a "
                             "server plugin's type takes --set KEY=VALUE, no TARGET)")
        _add(channel_type, name, dict(_pair(s) for s in settings), on, regex)
        return
    if key is not None and not target:
        raise UsageError(f"a {kind} channel needs its {key.replace('_', ' ')}")
    if key is None and target:
        raise UsageError("a Telegram chat is linked with a code sent to the bot: "
                         "run `claude-notify channels add telegram` without a chat id")
    config: dict[str, Any] = {key: target} if key else {}
    if secret:
        config["secret"] = secret
    made = _add(channel_type, name, config, on, regex)
    if made["type"] == "telegram":
        with _client() as client:
            link = client.request("POST", f"/v1/channels/{made['id']}/link")
        where = f" or open {link['url']}" if link.get("url") else ""
        click.echo(f"to link your chat, send this to the bot{where}: {link['command']}")
        return
    if made.get("config", {}).get("secret") and kind == "webhook":
        click.echo(f"its signing secret (shown once): {made['config']['secret']}")
    if not made.get("verified", True):
        click.echo("waiting for the recipient to confirm: open the link sent to it, or run "
                   f"`claude-notify channels verify {made['id']} CODE`")


def _pair(given: str) -> tuple[str, str]:
    key, sep, value = given.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--set takes KEY=VALUE, not {given!r}")
    return key.strip(), value


def _add(channel_type: str, name: str, config: dict[str, Any], on: str,
         regex: str | None) -> dict[str, Any]:
    rules = {"on": [r.strip() for r in on.split(",") if r.strip()], "regex": regex}
    with _client() as client:
        made: dict[str, Any] = client.request("POST", "/v1/channels", json={
            "type": channel_type, "name": name, "config": config, "rules": rules})
    click.echo(f"added {made['type']} channel {made['id']}")
    return made


def resolve(client: Any, given: str) -> str:
    """The full id of the one channel whose id starts with ``given`` (a full id is taken as it
    is, the server says if it is unknown); none or several is a usage error naming them."""
    wanted = given.strip().lower()
    try:
        if str(uuid.UUID(wanted)) == wanted:
            return wanted
    except ValueError:
        pass
    items = client.request("GET", "/v1/channels")
    items = items.get("items", items) if isinstance(items, dict) else items
    found = [str(ch["id"]) for ch in items if wanted and str(ch["id"]).startswith(wanted)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise UsageError(f"no channel id starts with {given!r}: see `claude-notify channels list`")
    shown = ", ".join(f[:13] + "…" for f in found[:5])
    raise UsageError(f"{given!r} is the start of {len(found)} channel ids ({shown}): "
                     "give more of it")


@channels.command()
@click.argument("channel_id")
@click.argument("code")
def verify(channel_id: str, code: str) -> None:
    """Confirm a recipient with the code it received (an SMS number, an e-mail address)."""
    with _client() as client:
        channel_id = resolve(client, channel_id)
        client.request("POST", f"/v1/channels/{channel_id}/verify", json={"code": code})
    click.echo(f"confirmed {channel_id}")


@channels.command()
@click.argument("channel_id")
def link(channel_id: str) -> None:
    """A one-time code to link a Telegram chat, or the Discord or Feishu account whose /run
    commands the channel takes (valid fifteen minutes)."""
    with _client() as client:
        channel_id = resolve(client, channel_id)
        code = client.request("POST", f"/v1/channels/{channel_id}/link")
    where = f" or open {code['url']}" if code.get("url") else ""
    click.echo(f"send this to the bot{where}: {code['command']}")


@channels.command(name="group-replies")
@click.argument("channel_id")
@click.argument("state", type=click.Choice(["on", "off"]))
def group_replies(channel_id: str, state: str) -> None:
    """Take commands in a linked Telegram group (on) or only in the private chat with the bot
    (off, the default). Even when on, only your own Telegram account's replies, /run and button
    presses count."""
    with _client() as client:
        channel_id = resolve(client, channel_id)
        channel = client.request("GET", f"/v1/channels/{channel_id}")
        if channel.get("type") != "telegram":
            raise UsageError(f"{channel_id} is a {channel.get('type')} channel: group replies "
                             "are a Telegram channel setting")
        client.request("PATCH", f"/v1/channels/{channel_id}",
                       json={"config": {"allow_group_replies": state == "on"}})
    chat = channel.get("config", {}).get("chat_title") or "the linked chat"
    click.echo(f"group replies {state} for {chat}" + (
        " (only your own Telegram account's commands count)" if state == "on" else ""))


@channels.command(name="rotate-secret")
@click.argument("channel_id")
def rotate_secret(channel_id: str) -> None:
    """Replace a webhook channel's signing secret; the new one is shown once, the old one stops
    verifying at once."""
    with _client() as client:
        channel_id = resolve(client, channel_id)
        made = client.request("POST", f"/v1/channels/{channel_id}/rotate-secret")
    click.echo(f"new signing secret for {made['id']} (shown once): {made['config']['secret']}")


@channels.command()
@click.argument("channel_id")
def remove(channel_id: str) -> None:
    """Delete a channel."""
    with _client() as client:
        channel_id = resolve(client, channel_id)
        client.request("DELETE", f"/v1/channels/{channel_id}")
    click.echo(f"removed {channel_id}")


@channels.command()
@click.argument("channel_id")
def test(channel_id: str) -> None:
    """Send a test message through a channel."""
    with _client() as client:
        channel_id = resolve(client, channel_id)
        client.request("POST", f"/v1/channels/{channel_id}/test")
    click.echo("test message queued")


@click.command(short_help="Upgrade the account to Pro (Stripe Checkout).")
@click.option("--no-browser", is_flag=True, help="Only print the payment page's address.")
def upgrade(no_browser: bool) -> None:
    """Pay for Pro on Stripe's Checkout page (US$4.90 a month, pro-rated): the plan changes as
    soon as the payment goes through, on every machine of the account."""
    with _client() as client:
        url = str(client.request("POST", "/v1/billing/checkout")["url"])
    _hand_over(url, "the payment page", no_browser)


@click.command(short_help="Manage the subscription (Stripe's billing portal).")
@click.option("--no-browser", is_flag=True, help="Only print the portal's address.")
def billing(no_browser: bool) -> None:
    """Change the card, read invoices or cancel Pro in Stripe's billing portal (a cancelled
    plan stays Pro until the end of the period paid for)."""
    with _client() as client:
        url = str(client.request("POST", "/v1/billing/portal")["url"])
    _hand_over(url, "the billing portal", no_browser)


def _hand_over(url: str, what: str, no_browser: bool) -> None:
    """Open ``url`` in the user's browser; print it either way, for a machine without one (or
    a terminal on another machine than the browser)."""
    opened = False
    if not no_browser:
        import webbrowser

        try:
            opened = webbrowser.open(url)
        except webbrowser.Error:
            opened = False
    click.echo(f"opened {what} in your browser: {url}" if opened else
               f"open {what} in a browser: {url}")
