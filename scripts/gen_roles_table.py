"""Write the role matrix of docs/teams.md from the one table in the code,
``claude_notify.cloud.server.teams.roles.ROLES``, so the doc cannot drift from what the server
enforces (tests/cloud/test_teams_doc.py checks it).

    python scripts/gen_roles_table.py            # rewrite the table in docs/teams.md
    python scripts/gen_roles_table.py --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

from claude_notify.cloud.server.db.models import ROLE_RANK
from claude_notify.cloud.server.teams.roles import PUBLIC, ROLES

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "teams.md"
BEGIN = "<!-- roles:begin (scripts/gen_roles_table.py writes this table) -->"
END = "<!-- roles:end -->"
COLUMNS = ("viewer", "member", "admin", "owner")


def table() -> str:
    """The matrix as a Markdown table: each route, the least role it needs, and a mark under
    every role that may use it (public routes need no sign-in at all)."""
    lines = ["| Route | Least role | " + " | ".join(COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for route, least in ROLES.items():
        marks = ["✓" if least == PUBLIC or ROLE_RANK[role] >= ROLE_RANK[least] else ""
                 for role in COLUMNS]
        shown = "public (no sign-in)" if least == PUBLIC else least
        lines.append(f"| `{route}` | {shown} | " + " | ".join(marks) + " |")
    return "\n".join(lines)


def rewritten(doc: str) -> str:
    head, begin, rest = doc.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise SystemExit(f"{TARGET}: the markers {BEGIN!r} and {END!r} are missing")
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    doc = TARGET.read_text(encoding="utf-8")
    fresh = rewritten(doc)
    if "--check" in argv:
        if fresh != doc:
            print(f"{TARGET} is out of date: run python scripts/gen_roles_table.py",
                  file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
