"""``claude-notify deliveries``: what the backend sent, and why it did not.

A notification that never reached the phone is refused by the plan, dead after its retries, or
still retrying; the reason sits on its row of ``GET /v1/notifications``, which this prints, so a
self-hoster need not read the raw API to learn "the free plan sends e-mail only".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import click

from claude_notify.commands.cloud import _client

_PAGE = 200
"""The API's largest page: ``--failed`` filters here, so it may read several."""
_MAX_PAGES = 10
"""How far back ``--failed`` looks (2,000 deliveries) before saying it found fewer."""


def state(item: dict[str, Any]) -> str:
    """One word a person reads: sent, refused, dead, retrying, sending or queued."""
    status = item.get("status")
    if status == "rejected":
        return "refused"
    if status == "pending":
        return "retrying" if item.get("attempts") else "queued"
    return str(status)


def failed(item: dict[str, Any]) -> bool:
    """Refused, dead, or retrying after a failed attempt."""
    return state(item) in ("refused", "dead", "retrying")


def _items(client: Any, *, only_failed: bool, limit: int) -> Iterator[dict[str, Any]]:
    """Newest first, at most ``limit``; with ``only_failed``, the failed ones among the newest
    :data:`_MAX_PAGES` pages."""
    cursor: str | None = None
    given = 0
    for _ in range(_MAX_PAGES if only_failed else 1):
        params: dict[str, Any] = {"limit": _PAGE if only_failed else limit}
        if cursor:
            params["cursor"] = cursor
        page = client.request("GET", "/v1/notifications", params=params)
        for item in page.get("items", []):
            if only_failed and not failed(item):
                continue
            yield item
            given += 1
            if given >= limit:
                return
        cursor = page.get("next_cursor")
        if not cursor:
            return


def _line(item: dict[str, Any]) -> str:
    when = str(item.get("created_at", ""))[:19].replace("T", " ")
    what = item.get("kind", "")
    if item.get("task_id"):
        what += f" {item['task_id']}"
    line = f"{when}  {item.get('channel_type', ''):<8} {state(item):<8} {what}"
    if item.get("attempts"):
        line += f" ({item['attempts']} attempt{'s' if item['attempts'] != 1 else ''})"
    if item.get("reason"):
        line += f": {item['reason']}"
    return line


@click.command(short_help="Recent deliveries: sent, refused, retrying or dead, and why.")
@click.option("--failed", "only_failed", is_flag=True,
              help="Only those refused (by the plan or quota), dead or retrying.")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="The API's records, as JSON.")
def deliveries(only_failed: bool, limit: int, as_json: bool) -> None:
    """The backend's recent deliveries, newest first, each with its state and reason:
    sent, queued, retrying (the last error), refused (the plan, the quota, an unconfirmed
    recipient) or dead (a permanent failure, or retries used up)."""
    with _client() as client:
        items = list(_items(client, only_failed=only_failed, limit=limit))
    if as_json:
        click.echo(json.dumps([{**item, "state": state(item)} for item in items], indent=2))
        return
    if not items:
        click.echo("no failed deliveries" if only_failed else "no deliveries yet")
        return
    for item in items:
        click.echo(_line(item))
