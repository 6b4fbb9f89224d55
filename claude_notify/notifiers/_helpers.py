"""What the command-line backends share: clean text, find a tool, run it under a deadline.

Running a tool is where third-party failures (missing binary, hang, non-zero exit) become one
:class:`DeliveryResult` line; nothing here raises for a failed delivery.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from claude_notify.notifiers.base import DeliveryResult

if TYPE_CHECKING:
    from claude_notify.notifiers.base import Host

# C0 controls except tab and newline, DEL, C1 controls, and the two XML non-characters: none of
# them displays, and ESC or C1 CSI in a notification is how terminal escapes get smuggled.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffe\uffff]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_CLIXML_ERROR = re.compile(r'<S S="Error">(.*?)</S>', re.DOTALL)
_CLIXML_NEWLINE = re.compile("_x000[DA]_")

Explain = Callable[[int, str], DeliveryResult]
"""Turns a tool's exit status and its first output line into the result to report."""


def clean_text(text: str, *, limit: int | None = None, newlines: bool = True) -> str:
    """``text`` without control characters or lone surrogates, cut to ``limit`` characters.

    Lone surrogates are replaced because they cannot be encoded into argv or XML at all.
    """
    text = _LONE_SURROGATE.sub("\ufffd", text).replace("\r\n", "\n").replace("\t", " ")
    text = _UNPRINTABLE.sub("", text.replace("\r", "\n"))
    if not newlines:
        text = " ".join(text.split("\n"))
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def find_tool(host: Host, *names: str) -> str | None:
    """The first of ``names`` found in an absolute directory of the host's ``PATH``.

    Not :func:`shutil.which`: before Python 3.12 it searches the current directory first on
    Windows, and like it we must not run a ``powershell.exe`` dropped in a cloned repository.
    Relative ``PATH`` entries are skipped for the same reason.
    """
    exts = [""]
    if host.platform == "win32":
        exts += host.env.get("PATHEXT", ".COM;.EXE;.BAT;.CMD").lower().split(";")
    for entry in host.env.get("PATH", os.defpath).split(os.pathsep):
        directory = Path(entry)
        if not directory.is_absolute():
            continue
        for name in names:
            for ext in exts:
                candidate = directory / (name + ext)
                if candidate.is_file() and os.access(candidate, os.X_OK):
                    return str(candidate)
    return None


def first_line(output: bytes) -> str:
    """The first non-blank line of a tool's output, safe to show in one line.

    Windows PowerShell may wrap its errors in CLIXML; the first error record is unwrapped.
    """
    text = output.decode("utf-8", errors="replace")
    if text.startswith("#< CLIXML"):
        import html

        record = _CLIXML_ERROR.search(text)
        text = _CLIXML_NEWLINE.sub("\n", record.group(1)) if record else ""
        text = html.unescape(text)
    for line in text.splitlines():
        if line.strip():
            return clean_text(line.strip(), limit=200, newlines=False)
    return ""


def run_tool(backend: str, argv: Sequence[str], *, timeout: float, env: dict[str, str],
             explain: Explain | None = None) -> DeliveryResult:
    """Run ``argv`` (never through a shell) with stdin closed, and report how it went."""
    import subprocess

    tool = Path(argv[0]).name
    if timeout <= 0:
        return DeliveryResult(backend, False, f"no time left to run {tool}", retryable=True)
    try:
        done = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return DeliveryResult(backend, False, f"{tool} did not finish within {timeout:g}s",
                              retryable=True)
    except OSError as exc:
        return DeliveryResult(backend, False, f"cannot run {argv[0]}: {exc.strerror or exc}")
    line = first_line(done.stderr) or first_line(done.stdout)
    if explain is not None:
        return explain(done.returncode, line)
    if done.returncode == 0:
        return DeliveryResult(backend, True, f"handed to {tool}")
    return DeliveryResult(backend, False, f"{tool} exited with {done.returncode}: {line}"
                          if line else f"{tool} exited with {done.returncode}")
