"""The app's own icon and the desktop-entry hint reach a real notification daemon."""

from __future__ import annotations

from pathlib import Path

import pytest
from desktop import DesktopSession
from helpers import cli_env, run_cli

import claude_notify
from claude_notify.notifiers.dbus import APP_ICON

pytestmark = pytest.mark.desktop


def test_the_packaged_icon_is_a_png_inside_the_package() -> None:
    icon = Path(APP_ICON).resolve()
    assert icon.parent.parent == Path(claude_notify.__file__).resolve().parent
    assert icon.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize(("flags", "shown"), [
    ([], APP_ICON),                 # no icon set: ours
    (["--icon", "none"], ""),       # none: no icon at all
])
def test_notifications_carry_the_app_icon_unless_told_otherwise(
    desktop: DesktopSession, tmp_path: Path, flags: list[str], shown: str,
) -> None:
    env = cli_env(tmp_path, desktop.env)
    mark = desktop.marker()
    assert run_cli(["run", *flags, "--", "true"], env=env).returncode == 0
    got = desktop.wait_for(since=mark)
    assert got["icon_path"] == shown


def test_a_users_icon_file_wins(desktop: DesktopSession, tmp_path: Path) -> None:
    own = tmp_path / "mine.png"
    own.write_bytes(Path(APP_ICON).read_bytes())
    env = cli_env(tmp_path, desktop.env)
    mark = desktop.marker()
    assert run_cli(["run", "--icon", str(own), "--", "true"], env=env).returncode == 0
    assert desktop.wait_for(since=mark)["icon_path"] == str(own)


def test_the_desktop_entry_hint_names_the_app() -> None:
    from claude_notify.notifiers.base import Notification
    from claude_notify.notifiers.dbus import build_notify_args

    args = build_notify_args(Notification(title="t", body="b"), frozenset(),
                             play_sound_ourselves=False)
    assert args[6]["desktop-entry"] == ("s", "claude-notify")
    assert args[6]["image-path"] == ("s", APP_ICON) and args[2] == APP_ICON
