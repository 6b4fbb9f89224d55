"""``claude-notify workspace``: the team workspaces this login belongs to.

A token acts in one workspace. ``switch`` asks the server for a token like this machine's (the
same scopes) acting in another workspace of the same person, and keeps it where ``login`` keeps
its token; nothing is revoked, so the other machines of the account carry on as they were.

Everything the server says is printed through :func:`~claude_notify.render.printable`: a
workspace name is typed by a person, and escape sequences in it must not reach the terminal.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import click

from claude_notify.commands.cloud import _client
from claude_notify.errors import CloudError, Refused, UsageError

INVITE_ROLES = ("member", "viewer", "admin")


def _shown(value: object) -> str:
    from claude_notify.render import printable

    return printable(str(value))


def _items(answer: Any) -> list[dict[str, Any]]:
    items = answer.get("items", answer) if isinstance(answer, dict) else answer
    if not isinstance(items, list):
        raise CloudError("the server's answer is not a list: is this a claude-notify server?")
    return [item for item in items if isinstance(item, dict)]


def _current(client: Any) -> dict[str, Any]:
    """The workspace this machine's token acts in."""
    try:
        found: dict[str, Any] = client.request("GET", "/v1/workspace")
    except Refused as exc:
        if exc.status == 404:
            raise CloudError("this server has no team workspaces (it predates them): "
                             "upgrade it") from None
        raise
    return found


def resolve(workspaces: list[dict[str, Any]], given: str) -> dict[str, Any]:
    """The one workspace ``given`` names: its id, its name (exact, else ignoring case) or a
    unique start of its id (four characters at least). A name that is also the start of another
    workspace's id names both, and is refused as ambiguous: a name is typed by whoever made the
    workspace, and must not capture what someone meant as an id. None or several is a usage
    error saying what to type instead."""
    wanted = given.strip()
    if not wanted:
        raise UsageError("name a workspace (see `claude-notify workspace list`)")
    try:
        as_id: str | None = str(uuid.UUID(wanted))
    except ValueError:
        as_id = None
    if as_id is not None:
        found = [w for w in workspaces if str(w.get("id")) == as_id]
    else:
        named = ([w for w in workspaces if str(w.get("name")) == wanted]
                 or [w for w in workspaces
                     if str(w.get("name")).casefold() == wanted.casefold()])
        started = [w for w in workspaces
                   if len(wanted) >= 4 and str(w.get("id")).startswith(wanted.lower())]
        found = list({str(w.get("id")): w for w in [*named, *started]}.values())
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        ids = ", ".join(_shown(w.get("id")) for w in found[:5])
        raise UsageError(f"{_shown(given)} names {len(found)} workspaces ({ids}): give the id")
    raise UsageError(f"you are in no workspace named {_shown(given)}: "
                     "see `claude-notify workspace list`")


def _line(w: dict[str, Any], *, current: bool) -> str:
    mark = "*" if current else " "
    seats = f"{w.get('members', '?')}/{w.get('seats', '?')}"
    return (f"{mark} {_shown(w.get('id', ''))}  {_shown(w.get('role', '')):<6} "
            f"{_shown(w.get('plan', '')):<4} {seats:<5} {_shown(w.get('name', ''))}")


@click.group(short_help="Team workspaces: list, switch, invite, members.")
def workspace() -> None:
    """The workspaces you belong to: your personal one, and teams you were invited to.

    This machine's token acts in one of them (``*`` in the list): its tasks report there and
    its quota and plan are that workspace's. The command relay and approvals stay yours alone
    whichever workspace you are in.
    """


@workspace.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="The API's records, as JSON.")
def list_(as_json: bool) -> None:
    """Your workspaces; ``*`` marks the one this machine acts in."""
    with _client() as client:
        here = _current(client)
        items = _items(client.request("GET", "/v1/workspaces"))
    if as_json:
        click.echo(json.dumps([{**w, "current": w.get("id") == here.get("id")} for w in items],
                              indent=2))
        return
    click.echo("  id                                    role   plan seats name")
    for w in items:
        click.echo(_line(w, current=w.get("id") == here.get("id")))


def switch_to(client: Any, given: str) -> tuple[dict[str, Any], str]:
    """Make this machine act in the workspace ``given`` names: its record, and where its new
    token is kept. Staying where it is costs no token."""
    from claude_notify.cloud import account

    who = account.current()
    if who is None:
        raise CloudError("not logged in: run `claude-notify login`")
    target = resolve(_items(client.request("GET", "/v1/workspaces")), given)
    if target.get("id") == _current(client).get("id"):
        return target, ""
    _send_spooled(target)
    try:
        made = client.request("POST", f"/v1/workspaces/{target['id']}/token")
    except Refused as exc:
        if exc.status == 403:
            raise CloudError(f"{exc} (this machine's token cannot switch workspace: sign in "
                             "with `claude-notify login --email ADDRESS --workspace NAME`)"
                             ) from None
        raise
    if not isinstance(made, dict) or not isinstance(made.get("token"), str):
        raise CloudError("the server gave no token: is this a claude-notify server?")
    saved = account.save(account.Account(who.server, who.email, who.storage,
                                         tuple(made.get("scopes") or who.scopes)),
                         made["token"])
    return target, saved.storage


def _send_spooled(target: dict[str, Any]) -> None:
    """Send what the spool holds with the token it was recorded under, so tasks that ran
    before the switch report into the workspace they ran in; what cannot go now (the server
    is down) is said, since it will go with the new token."""
    from claude_notify.cloud import spool

    if not spool.pending():
        return
    from claude_notify.cloud.sync import drain

    left = drain().left
    if left:
        click.echo(f"claude-notify: {left} spooled event(s) could not be sent now; they will "
                   f"report into {_shown(target.get('name', ''))}", err=True)


@workspace.command()
@click.argument("name_or_id", metavar="NAME-OR-ID")
def switch(name_or_id: str) -> None:
    """Make this machine act in another of your workspaces (by name or id): its tasks report
    there from now on. Your other machines stay where they are."""
    with _client() as client:
        target, storage = switch_to(client, name_or_id)
    where = f"{_shown(target.get('name', ''))} ({_shown(target.get('role', ''))})"
    click.echo(f"switched to {where} (token kept in the {storage})" if storage
               else f"already in {where}")


@workspace.command()
@click.argument("address", metavar="EMAIL")
@click.option("--role", type=click.Choice(INVITE_ROLES), default="member", show_default=True,
              help="What they may do: viewer reads, member's machines report in, admin also "
                   "manages channels and members (only the owner invites admins).")
def invite(address: str, role: str) -> None:
    """Invite EMAIL to this workspace (Pro; at most 5 people, pending invites included). The
    link is e-mailed to them only (it signs in as that address) and works once, for 7 days."""
    with _client() as client:
        try:
            made = client.request("POST", "/v1/workspace/invites",
                                  json={"email": address.strip(), "role": role})
        except Refused as exc:
            if exc.status == 403 and "scope" in str(exc):
                raise CloudError(f"{exc} (to manage the workspace from this machine, sign in "
                                 "with `claude-notify login --manage`)") from None
            raise
        here = _current(client)
    click.echo(f"invited {_shown(made.get('email', address))} to "
               f"{_shown(here.get('name', ''))} as {_shown(made.get('role', role))}: the link "
               f"is mailed to them (valid until {_shown(made.get('expires_at', ''))[:10]})")


@workspace.command()
@click.option("--json", "as_json", is_flag=True, help="The API's records, as JSON.")
def members(as_json: bool) -> None:
    """Who is in this workspace, and their roles."""
    with _client() as client:
        here = _current(client)
        items = _items(client.request("GET", "/v1/workspace/members"))
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    click.echo(f"{_shown(here.get('name', ''))}: {len(items)} of {here.get('seats', '?')} seats")
    for m in items:
        joined = _shown(m.get("joined_at", ""))[:10]
        click.echo(f"  {_shown(m.get('role', '')):<6} {joined}  {_shown(m.get('email', ''))}")
