"""docs/teams.md shows the role matrix the server enforces: its table is read back and compared
with ``teams.roles.ROLES`` in both directions (a route added, dropped or given another role
fails here until ``python scripts/gen_roles_table.py`` is run)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from claude_notify.cloud.server.db.models import ROLE_RANK
from claude_notify.cloud.server.teams.roles import PUBLIC, ROLES

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "teams.md"
ROW = re.compile(r"^\| `([A-Z]+ /[^`]*)` \| ([a-z() -]+) \|((?: [✓ ]? \|)+)$")


def _documented() -> tuple[dict[str, str], dict[str, list[str]]]:
    """The doc's routes with their least role, and the roles it marks as allowed."""
    least: dict[str, str] = {}
    marked: dict[str, list[str]] = {}
    header = ["viewer", "member", "admin", "owner"]
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if found := ROW.match(line):
            route, role, cells = found.groups()
            assert route not in least, f"{route} is in the doc twice"
            least[route] = PUBLIC if role == "public (no sign-in)" else role
            marks = [c.strip() for c in cells.rstrip("|").split("|")]
            marked[route] = [r for r, m in zip(header, marks, strict=True) if m == "✓"]
    return least, marked


def test_the_docs_role_matrix_is_the_codes() -> None:
    least, marked = _documented()
    assert least == ROLES, "run python scripts/gen_roles_table.py"
    for route, role in ROLES.items():
        allowed = [r for r in ("viewer", "member", "admin", "owner")
                   if role == PUBLIC or ROLE_RANK[r] >= ROLE_RANK[role]]
        assert marked[route] == allowed, route


def test_the_generator_agrees() -> None:
    checked = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_roles_table.py"),
                              "--check"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
