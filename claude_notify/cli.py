"""The ``claude-notify`` command line: parse, call, map errors to exit codes.

Imports click and the stdlib only; every subcommand lives in its own module, loaded when named.
``run`` — on the path of every wrapped command — first tries the lean parser of
:mod:`claude_notify.options` and never imports click when the command line is well-formed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from claude_notify.errors import ClaudeNotifyError, warn


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:  # asked what this is: the help, on stdout, and success
        args = ["--help"]
    if args == ["hook"]:  # Claude Code waits on this one: no click, always 0
        from claude_notify.claude.hook import main as hook_main

        sys.exit(hook_main())
    if args[:1] == ["run"]:
        from claude_notify.options import NotPlain, parse_run_args

        try:
            parsed = parse_run_args(args[1:])
        except NotPlain:
            pass  # click explains help and errors
        else:
            from claude_notify.run import run_command

            code = _guarded(run_command, parsed)
            if argv is None:
                # Everything is written and closed; tearing the interpreter down would cost
                # ~10 ms on every wrapped command (and wait for a hung D-Bus thread).
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
            sys.exit(code)
    sys.exit(_click_main(args))


def _guarded(func: Any, *args: Any) -> int:
    """Call ``func``; our errors become one line on stderr and their exit code."""
    try:
        return int(func(*args))
    except ClaudeNotifyError as exc:
        warn(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _click_main(args: list[str]) -> int:
    import click

    from claude_notify.commands import cli

    try:
        result = cli.main(args, prog_name="claude-notify", standalone_mode=False)
    except ClaudeNotifyError as exc:
        warn(str(exc))
        return exc.exit_code
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "claude-notify"
        warn(f"{exc.format_message()} (see '{where} --help')")
        return exc.exit_code
    except click.ClickException as exc:
        warn(exc.format_message())
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        return 130
    return result if isinstance(result, int) else 0
