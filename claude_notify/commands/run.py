"""The click face of ``run``: help text and error messages, built from the shared option table.

Well-formed command lines never get here (see :mod:`claude_notify.options`); this command is
what ``--help`` and a mistyped option meet.
"""

from __future__ import annotations

import click

from claude_notify.options import RUN_OPTIONS, ParsedRun


def _params() -> list[click.Parameter]:
    params: list[click.Parameter] = []
    for opt in RUN_OPTIONS:
        decls = [opt.dest, *opt.flags]
        if opt.metavar is None:
            params.append(click.Option(decls, is_flag=True, default=None, help=opt.help))
        else:
            kind = click.Choice(opt.choices) if opt.choices else click.STRING
            text = f"{opt.help} One of: {', '.join(opt.choices)}." if opt.choices else opt.help
            params.append(click.Option(decls, type=kind, metavar=opt.metavar, help=text))
    params.append(click.Argument(["command"], nargs=-1, required=True, type=click.UNPROCESSED))
    return params


def _callback(command: tuple[str, ...], **values: str | bool | None) -> int:
    from claude_notify.run import run_command

    kept = {k: v for k, v in values.items() if v is not None}
    return run_command(ParsedRun(kept, command))


run = click.Command(
    "run",
    params=_params(),
    callback=_callback,
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": False},
    short_help="Run a command and notify when it ends.",
    help="""Run COMMAND, stream its output unchanged, and notify when it ends.

    \b
    One argument runs through your shell:  claude-notify run "make && make test"
    Several are executed directly:         claude-notify run -- make test

    Templates take {cmd} {command} {status} {mark} {exit_code} {signal} {duration} {tail}
    {host} {cwd} {project} {match}. The exit status is the command's own (128+N when
    signal N ended it; 127 not found; 126 not executable).
    """,
)
