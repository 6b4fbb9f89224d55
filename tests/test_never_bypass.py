"""No code path of claude-notify skips Claude Code's permission checks.

Approvals from the phone answer Claude Code's own permission request (``PermissionRequest``) or
defer a call (``PreToolUse`` ``defer``) to ask first. Three things would skip the checks
altogether, and none may appear in the package as something it could send or pass:
``bypassPermissions`` (a permission mode), ``--dangerously-skip-permissions`` (its flag), and a
``PreToolUse`` answer of ``allow`` (which skips deny rules and the mode; measured with 2.1.332).

The package's source is read as Python (its syntax tree), so docstrings and error messages that
say "never bypassPermissions" do not count, and a string built elsewhere is still found when
the words appear in it. The checker is itself tested on code that does each of the three.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from claude_notify.agent.claude import build_argv, deferring_settings
from claude_notify.agent.store import AgentSettings
from claude_notify.config import CLAUDE_PERMISSION_MODES

PACKAGE = Path(__file__).resolve().parents[1] / "claude_notify"
FORBIDDEN = ("bypassPermissions", "--dangerously-skip-permissions",
             "dangerouslySkipPermissions", "allowDangerouslySkipPermissions")
PRE_TOOL_USE_ANSWERS = {"deny", "defer", "ask"}


def _messages(tree: ast.AST) -> set[int]:
    """Ids of string nodes that only describe: docstrings, raised errors' text, ``help=``."""
    quiet: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(
                body[0].value, ast.Constant):
            quiet.add(id(body[0].value))
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            quiet.add(id(node.value))  # attribute docstrings
        if isinstance(node, ast.Raise) and node.exc is not None:
            quiet.update(id(n) for n in ast.walk(node.exc))
        if isinstance(node, ast.keyword) and node.arg == "help":
            quiet.update(id(n) for n in ast.walk(node.value))
    return quiet


def problems(source: str, where: str = "<code>") -> list[str]:
    tree = ast.parse(source)
    quiet = _messages(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in quiet:
            text = node.value
            if any(word in text for word in FORBIDDEN):
                found.append(f"{where}:{node.lineno}: {text[:80]!r}")
            if "permissionDecision" in text and '"allow"' in text:
                found.append(f"{where}:{node.lineno}: a PreToolUse allow in {text[:80]!r}")
        decisions: list[ast.expr] = []
        if isinstance(node, ast.keyword) and node.arg == "permissionDecision":
            decisions.append(node.value)
        if isinstance(node, ast.Dict):
            decisions += [v for k, v in zip(node.keys, node.values, strict=True)
                          if isinstance(k, ast.Constant) and k.value == "permissionDecision"]
        for value in decisions:
            if not (isinstance(value, ast.Constant) and value.value in PRE_TOOL_USE_ANSWERS):
                found.append(f"{where}:{value.lineno}: permissionDecision may be "
                             f"{ast.unparse(value)}")
    return found


def test_the_package_never_bypasses_permissions() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 100
    found = [p for path in files
             for p in problems(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE)))]
    assert found == []


@pytest.mark.parametrize("code", [
    'argv = ["claude", "--dangerously-skip-permissions"]',
    'mode = "bypassPermissions"',
    'argv += ["--permission-mode", "bypass" + "Permissions"] if False else ["bypassPermissions"]',
    'out = {"hookSpecificOutput": {"permissionDecision": "allow"}}',
    'out = dict(hookEventName="PreToolUse", permissionDecision="allow")',
    'out = _output("PreToolUse", permissionDecision=answer)',
    "line = '{\"permissionDecision\": \"allow\"}'",
])
def test_the_checker_finds_each_way_of_bypassing(code: str) -> None:
    assert problems(code)


def test_the_checker_lets_descriptions_and_refusals_through() -> None:
    code = ('"""Never ``bypassPermissions``."""\n'
            'def f(x):\n    """Not --dangerously-skip-permissions."""\n'
            '    if x == "bypasspermissions":\n'
            '        raise ValueError("never bypassPermissions")\n'
            '    return dict(permissionDecision="defer")\n')
    assert problems(code) == []


@pytest.mark.parametrize("mode", CLAUDE_PERMISSION_MODES)
def test_a_relayed_turns_command_line_keeps_the_checks(mode: str, tmp_path: Path) -> None:
    settings = AgentSettings(claude=True, claude_permission_mode=mode,
                             claude_allowed_tools=("Bash(git diff *)",))
    for hooks in (None, tmp_path / "settings.json"):
        argv = build_argv(settings, "5f0c3e9a-6a43-4d0e-9d8b-0d9f3c0a1b2c", hooks)
        assert not any(word in arg for arg in argv for word in FORBIDDEN)
        assert argv[argv.index("--permission-mode") + 1] == mode
        assert "--setting-sources" in argv and "--strict-mcp-config" in argv
    assert set(deferring_settings()["hooks"]) == {"PreToolUse", "PermissionRequest"}
