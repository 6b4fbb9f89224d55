"""Send what the spool holds: run detached after each task (``python -m claude_notify.cloud.sync``)
and by ``claude-notify sync``.

Stops at the first sign the server is unreachable (the rest waits for the next attempt) and on a
refused token (nothing can go until the user logs in again).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from claude_notify.cloud import account, spool
from claude_notify.cloud.client import CloudClient
from claude_notify.errors import CloudError, CloudUnreachable, Refused, Unauthorized


@dataclass(frozen=True, slots=True)
class SyncReport:
    sent: int
    refused: int
    left: int
    problem: str | None


def drain(*, timeout: float = 10.0) -> SyncReport:
    """Send every spooled request that can go now."""
    who = account.current()
    if who is None:
        return SyncReport(0, 0, len(spool.pending()), "not logged in")
    if not spool.pending():
        return SyncReport(0, 0, 0, None)
    sent = refused = 0
    problem = None
    with CloudClient(who.server, account.token(who), timeout=timeout) as client:
        for item in spool.claim_all():
            try:
                if item.raw is not None:
                    client.request(item.method, item.path, content=item.raw)
                else:
                    client.request(item.method, item.path, json=item.body)
            except Refused as exc:
                spool.bury(item, f"{exc.status}: {exc}")
                refused += 1
                continue
            except (CloudUnreachable, Unauthorized) as exc:
                spool.release(item)
                problem = str(exc)
                break
            except CloudError as exc:
                spool.release(item)
                problem = str(exc)
                break
            spool.done(item)
            sent += 1
    return SyncReport(sent, refused, len(spool.pending()), problem)


def main() -> int:
    try:
        report = drain()
    except Exception as exc:  # detached: the hook log is where problems can be read
        from claude_notify.background import log

        log(f"cloud sync failed: {type(exc).__name__}: {exc}")
        return 0
    if report.problem and report.problem != "not logged in":
        from claude_notify.background import log

        log(f"cloud sync: {report.problem} ({report.left} waiting in the spool)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
