"""``claude-notify hook``: the Claude Code hook entry point.

It must never get in Claude's way: it reads the payload, decides, hands the slow part (waiting out
the debounce, reading the transcript, talking to D-Bus) to a detached process, and exits 0 —
whatever the input — within a few tens of milliseconds, printing nothing. Problems go to
``hook.log`` in the state dir.

The one exception to "print nothing": where no desktop can be reached (over SSH, in a container)
the notification goes back to Claude Code as JSON asking it to write a terminal notification
sequence to the user's terminal, since hooks have no terminal of their own. That path cannot be
debounced (the answer is due now), so it notifies at once.

With ``claude.approvals = "phone"``, ``PermissionRequest`` is the other exception: it waits for the
owner's answer through the local agent (:mod:`claude_notify.claude.approval`) and prints Claude
Code's decision, or nothing (no agent, no answer in time), which leaves it to the dialog.

``Stop`` fires after every turn. It is debounced: the delivery process waits ``claude.debounce``
seconds and gives up if a newer ``Stop``, a new prompt or a tool call of the same session came in
meanwhile (they replace or remove the session's pending file).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Final

from claude_notify import config as config_mod
from claude_notify import paths
from claude_notify.background import log, spawn
from claude_notify.events import TaskEvent, host_name, new_id, utcnow

MAX_PAYLOAD = 4 * 1024 * 1024
WITHDRAWING: Final = frozenset({"PostToolUse", "PostToolUseFailure", "Stop", "UserPromptSubmit",
                                "SessionEnd"})
"""The session moved on: a permission request still waiting for the phone was answered at the
terminal (see :mod:`claude_notify.claude.approval`)."""
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def main(stdin: BinaryIO | None = None, env: Mapping[str, str] | None = None) -> int:
    """Always 0: a notifier must not turn into a hook error in Claude's transcript."""
    env = os.environ if env is None else env
    try:
        payload = _read(stdin if stdin is not None else sys.stdin.buffer)
        output = handle(payload, env)
        if output:
            sys.stdout.write(output + "\n")
            sys.stdout.flush()
    except Exception as exc:
        log(f"hook: {type(exc).__name__}: {exc}")
    return 0


def _read(stream: BinaryIO) -> dict[str, Any]:
    if stream.isatty():
        raise ValueError("no hook payload on stdin (run by Claude Code, not by hand)")
    data = stream.read(MAX_PAYLOAD + 1)
    if len(data) > MAX_PAYLOAD:
        raise ValueError("hook payload larger than 4 MiB")
    if not data.strip():
        raise ValueError("empty hook payload")
    payload = json.loads(data)
    if not isinstance(payload, dict):
        raise ValueError("hook payload is not a JSON object")
    return payload


def handle(payload: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
    """Act on one payload; the JSON to print, if any."""
    if env.get("CLAUDE_NOTIFY_RELAY_DECISIONS"):  # inside a relayed `claude -p` turn
        from claude_notify.claude import deferral

        return deferral.handle(payload, env)
    name = payload.get("hook_event_name")
    session = _text(payload.get("session_id")) or "unknown"
    turns = paths.state_dir() / "claude"
    if name == "PermissionRequest":
        from claude_notify.claude import approval

        return approval.ask(payload, env)
    if name in WITHDRAWING:
        from claude_notify.claude import approval

        approval.withdraw(payload, env)  # nothing, cheaply, unless an agent listens
        if name not in ("UserPromptSubmit", "Stop"):
            return None
    if name == "UserPromptSubmit":
        _cancel(turns, session)
        _write_json(turns / f"{_safe(session)}.turn",
                    {"prompt_at": time.time(), "prompt_id": payload.get("prompt_id")})
        return None
    if name == "PreToolUse":
        _cancel(turns, session)
        return None
    if name == "Stop" and payload.get("stop_hook_active"):
        return None  # Claude is continuing because a stop hook asked it to: not done yet
    if name == "Notification" and payload.get("notification_type") == "permission_prompt":
        from claude_notify.claude import approval

        if approval.pending(payload, env):  # its card is on the phone: the desktop alone
            env = {**env, "CLAUDE_NOTIFY_CLOUD_ENABLED": "0"}
    cfg = config_mod.load(env)
    built = build_event(payload, turns, cfg)
    if built is None:
        return None
    event, urgency, debounce = built
    if not desktop_reachable(env):
        return terminal_output(event, urgency, cfg, env)
    _spawn_delivery(turns, session, event, urgency=urgency, debounce=debounce,
                    transcript=_text(payload.get("transcript_path")), env=env)
    return None


Built = tuple[TaskEvent, str | None, float]
"""A payload's event, its urgency hint (``None``: by status) and how long to debounce it."""


@dataclass(frozen=True, slots=True)
class Turn:
    """What every hook event's notification is built from."""

    payload: Mapping[str, Any]
    base: TaskEvent
    """A ``finished`` event of the turn: session, task, times, directory, command."""
    project: str
    duration: float | None
    last: str | None
    """Claude's last message, if the payload has one."""
    cfg: config_mod.Config

    def text(self, key: str) -> str | None:
        return _text(self.payload.get(key))


def _stop(turn: Turn) -> Built | None:
    duration = turn.duration
    if duration is not None and duration < turn.cfg["claude.min_duration"]:
        return None
    suffix = f" · {_duration(duration)}" if duration is not None else ""
    return (replace(turn.base, status="success",
                    title=f"✓ Claude finished in {turn.project}{suffix}",
                    message=excerpt(turn.last) if turn.last else None),
            None, turn.cfg["claude.debounce"])


def _subagent_stop(turn: Turn) -> Built | None:
    if not turn.cfg["claude.subagents"]:
        return None
    agent = turn.text("agent_type") or "subagent"
    return (replace(turn.base, status="success", title=f"✓ {agent} finished in {turn.project}",
                    message=excerpt(turn.last) if turn.last else None), None, 0.0)


def _stop_failure(turn: Turn) -> Built | None:
    error = turn.text("error") or "error"
    details = turn.text("error_details") or turn.last or error
    return (replace(turn.base, status="failure",
                    title=f"✗ Claude stopped in {turn.project}: {error}",
                    message=excerpt(details)), "critical", 0.0)


def _notification(turn: Turn) -> Built | None:
    kind = turn.text("notification_type") or ""
    message = turn.text("message") or "Claude Code needs your attention"
    title = {
        "permission_prompt": f"Claude needs your permission · {turn.project}",
        "idle_prompt": f"Claude is waiting for your input · {turn.project}",
    }.get(kind, f"{turn.text('title') or 'Claude Code'} · {turn.project}")
    urgency = "critical" if kind in ("permission_prompt", "elicitation_dialog") else "normal"
    return (replace(turn.base, type="needs_input", status="needs_input", title=title,
                    message=excerpt(message), duration_s=None, started_at=None),
            urgency, 0.0)


BUILDERS: Final[Mapping[str, Callable[[Turn], Built | None]]] = {
    "Stop": _stop,
    "SubagentStop": _subagent_stop,
    "StopFailure": _stop_failure,
    "Notification": _notification,
}
"""How each hook event that notifies becomes a task event; ``None`` from one: not this time."""


def build_event(payload: Mapping[str, Any], turns: Path, cfg: config_mod.Config) -> Built | None:
    """The task event for a payload, its urgency hint and how long to debounce it."""
    builder = BUILDERS.get(str(payload.get("hook_event_name")))
    if builder is None:
        return None
    from datetime import datetime, timezone

    cwd = _text(payload.get("cwd")) or ""
    session = _text(payload.get("session_id")) or "unknown"
    turn = _read_json(turns / f"{_safe(session)}.turn")
    started = turn.get("prompt_at") if isinstance(turn.get("prompt_at"), int | float) else None
    duration = time.time() - started if started is not None else None
    project = Path(cwd).name or cwd or "Claude Code"
    base = TaskEvent(
        type="finished", source="claude-code", session_id=session, machine_id=_machine_id(),
        task_id=_text(payload.get("prompt_id")) or _text(turn.get("prompt_id")) or new_id(),
        cwd=cwd, host=host_name(), command=f"claude · {project}",
        started_at=datetime.fromtimestamp(started, timezone.utc) if started else None,
        ended_at=utcnow(), duration_s=duration)
    return builder(Turn(payload, base, project, duration,
                        _text(payload.get("last_assistant_message")), cfg))


def desktop_reachable(env: Mapping[str, str]) -> bool:
    """Whether a desktop notification can reach the user from here (cheap, no connection)."""
    from claude_notify.notifiers import current_host

    host = current_host(env)
    if host.is_ssh:
        return False
    if host.platform in ("darwin", "win32") or host.is_wsl:
        return True
    from claude_notify.notifiers.dbus import bus_address

    graphical = env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")
    return bool(graphical) and bus_address(env) is not None


def terminal_output(event: TaskEvent, urgency: str | None, cfg: config_mod.Config,
                    env: Mapping[str, str]) -> str | None:
    """The JSON that asks Claude Code to show our notification in the user's terminal."""
    from claude_notify.dispatch import Dispatcher, default_sinks
    from claude_notify.notifiers.terminal import build_sequence, detect_kind
    from claude_notify.sinks import Style, build_notification

    # Every sink but the desktop, which Claude Code stands in for here: the history, and the
    # cloud when logged in (a headless VM is where a phone notification matters most).
    sinks = [sink for sink in default_sinks(cfg, env, quiet=True) if sink.name != "desktop"]
    decision = Dispatcher(cfg, env, sinks=sinks).emit(event, on="exit", min_duration=0.0)
    if not decision.notify:
        return None
    notification = build_notification(event, Style.from_config(cfg), urgency=urgency)
    kind, _ = detect_kind(env)
    if kind == "bell":
        return None
    sequence = build_sequence(notification, kind, tmux=False)
    return json.dumps({"terminalSequence": sequence.decode("utf-8", "replace")})


def _spawn_delivery(turns: Path, session: str, event: TaskEvent, *, urgency: str | None,
                    debounce: float, transcript: str | None, env: Mapping[str, str]) -> None:
    token = new_id()
    debounced = debounce > 0
    path = turns / (f"{_safe(session)}.pending" if debounced else f"now-{token}.json")
    _write_json(path, {"token": token, "delay": debounce, "urgency": urgency,
                       "transcript": transcript, "event": event.to_dict()})
    spawn("claude_notify.claude.deliver", [str(path), token], env=env)


def _cancel(turns: Path, session: str) -> None:
    try:
        (turns / f"{_safe(session)}.pending").unlink()
    except OSError:
        pass


def _write_json(path: Path, data: object) -> None:
    """Atomic: the delivery process never reads half a file. Not fsynced: the hook answers
    within milliseconds, and a turn's timing or pending notice lost to a power cut is harmless."""
    from claude_notify.fsutil import atomic_write

    atomic_write(path, json.dumps(data), mode=None, durable=False)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _machine_id() -> str:
    from claude_notify.identity import machine_id

    return machine_id()


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _safe(session: str) -> str:
    """A session id as a file name: no path tricks from a hostile payload."""
    return _SAFE.sub("_", session)[:128] or "unknown"


def excerpt(text: str, limit: int = 400) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _duration(seconds: float) -> str:
    from claude_notify.render import format_duration

    return format_duration(seconds)
