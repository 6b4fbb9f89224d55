"""Print a release's notes: its section of CHANGELOG.md, which is the only place they are written.

    python scripts/release_notes.py               # the notes of the version being released
    python scripts/release_notes.py 0.2.0         # the notes of another released version
    python scripts/release_notes.py --unreleased  # what the next release will say, so far
    python scripts/release_notes.py --check       # is everything that names the version agreed?

The version being released is ``claude_notify.__version__`` (the one place it is set; hatch
reads it for the wheel). ``--check`` exits 1 with one line per disagreement: the CHANGELOG's top
released section, the image tag in deploy/compose.yaml and deploy/k8s/kustomization.yaml must all
name that version. The release steps are in docs/releasing.md.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHANGELOG = ROOT / "CHANGELOG.md"
UNRELEASED = "Unreleased"
_HEADING = re.compile(r"^## \[(?P<name>[^\]]+)\](?:\s+-\s+(?P<date>\d{4}-\d{2}-\d{2}))?\s*$")


@dataclass(frozen=True, slots=True)
class Section:
    """One ``## [name] - date`` section of a Keep a Changelog file."""

    name: str
    """``Unreleased`` or a version."""
    date: str | None
    """The release date (``YYYY-MM-DD``); None for Unreleased."""
    body: str
    """The text under the heading, without it, stripped of blank lines around it."""


class NotesError(Exception):
    """Bad input or a missing section: one line for the user, exit 1."""


def sections(text: str) -> list[Section]:
    """The file's ``##`` sections in order; link references at the end are not part of any."""
    found: list[Section] = []
    name: str | None = None
    date: str | None = None
    lines: list[str] = []

    def close() -> None:
        if name is not None:
            body = "\n".join(line for line in lines if not re.match(r"^\[[^\]]+\]:\s", line))
            found.append(Section(name, date, body.strip("\n")))

    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            close()
            name, date, lines = heading["name"], heading["date"], []
        elif line.startswith("## "):
            raise NotesError(f"CHANGELOG.md: a heading that is not '## [VERSION] - DATE': {line}")
        elif name is not None:
            lines.append(line)
    close()
    return found


def notes(text: str, version: str) -> str:
    """The body of ``version``'s section; a released version must have its date."""
    for section in sections(text):
        if section.name == version:
            if version != UNRELEASED and section.date is None:
                raise NotesError(f"CHANGELOG.md: [{version}] has no date ('## [{version}] - "
                                 "YYYY-MM-DD')")
            if not section.body:
                raise NotesError(f"CHANGELOG.md: [{version}] is empty")
            return section.body
    hint = f"; move [{UNRELEASED}] under '## [{version}] - YYYY-MM-DD' first (docs/releasing.md)" \
        if version != UNRELEASED else ""
    raise NotesError(f"CHANGELOG.md has no section [{version}]{hint}")


def top_released(text: str) -> Section | None:
    """The first section that is not Unreleased: what the latest release said."""
    return next((s for s in sections(text) if s.name != UNRELEASED), None)


def disagreements(version: str, *, root: Path = ROOT) -> list[str]:
    """Where the files a release ships name another version than ``version``."""
    found = []
    top = top_released((root / "CHANGELOG.md").read_text(encoding="utf-8"))
    if top is None or top.name != version:
        found.append(f"CHANGELOG.md: the top released section is "
                     f"{f'[{top.name}]' if top else 'missing'}, not [{version}]")
    compose = (root / "deploy" / "compose.yaml").read_text(encoding="utf-8")
    tags = re.findall(r"^\s*image:\s*claude-notify:(\S+)\s*$", compose, re.MULTILINE)
    if tags != [version]:
        found.append(f"deploy/compose.yaml: image claude-notify:{','.join(tags) or '?'}, "
                     f"not {version}")
    kustomization = (root / "deploy" / "k8s" / "kustomization.yaml").read_text(encoding="utf-8")
    k8s_tags = re.findall(r"^\s*newTag:\s*\"?([^\"\s]+)\"?\s*$", kustomization, re.MULTILINE)
    if k8s_tags != [version]:
        found.append(f"deploy/k8s/kustomization.yaml: newTag {','.join(k8s_tags) or '?'}, "
                     f"not {version}")
    return found


def main(argv: list[str] | None = None) -> int:
    from claude_notify import __version__

    if hasattr(signal, "SIGPIPE"):  # `release_notes.py | head`: stop quietly, as cat does
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)

    parser = argparse.ArgumentParser(prog="release_notes.py", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("version", nargs="?", default=__version__,
                       help=f"a released version (default: {__version__})")
    group.add_argument("--unreleased", action="store_true", help="the Unreleased section")
    group.add_argument("--check", action="store_true",
                       help="exit 1 unless the CHANGELOG and the image tags name the version")
    parser.add_argument("--changelog", type=Path, default=CHANGELOG, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = disagreements(__version__)
            for problem in problems:
                print(f"release_notes: {problem}", file=sys.stderr)
            return 1 if problems else 0
        try:
            text = args.changelog.read_text(encoding="utf-8")
        except OSError as exc:
            raise NotesError(f"cannot read {args.changelog}: {exc.strerror}") from exc
        print(notes(text, UNRELEASED if args.unreleased else args.version))
    except NotesError as exc:
        print(f"release_notes: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
