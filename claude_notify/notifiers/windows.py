"""Windows toasts: SnoreToast when installed, else Windows PowerShell, natively or from WSL.

Toasts need a registered AppUserModelID. Ours is not registered by anything yet, so PowerShell's
own (always registered) is the default; ``CLAUDE_NOTIFY_APP_ID`` names a registered one instead.

The PowerShell script is fixed code: the toast XML, built and XML-escaped here, reaches it only
as a base64 literal, so no user character is ever parsed as PowerShell (which also treats the
typographic quotes U+2018 and U+2019 as string delimiters, a trap for quote-doubling).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import ClassVar, Final

from claude_notify.notifiers._helpers import clean_text, find_tool, run_tool
from claude_notify.notifiers.base import Availability, DeliveryResult, Host, Notification

POWERSHELL_AUMID: Final = (
    "{1AC14E77-02E7-4E5D-B744-2EB1AE5198B7}\\WindowsPowerShell\\v1.0\\powershell.exe"
)
WSL_POWERSHELL: Final = "/mnt/c/Windows/System32/WindowsPowerShell/v1.0/powershell.exe"
TITLE_LIMIT: Final = 200
BODY_LIMIT: Final = 1000
"""A toast shows about four lines; the limits also keep the encoded script far below the
32,767-character Windows command line even when every character needs escaping."""

_APP_ID = re.compile(r"[A-Za-z0-9{}\\._-]{1,128}")
_SOUND_EVENT = re.compile(r"(?:ms-winsoundevent:)?(Notification\.[A-Za-z0-9.]{1,40})")
_XML_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"})
_PS_QUOTES = "'\u2018\u2019\u201a\u201b"

# The only code PowerShell runs. ``[Console]::Error`` bypasses the CLIXML that -EncodedCommand
# wraps errors in, so the caller reads one plain line. Windows PowerShell 5.1 is required:
# PowerShell 7 cannot load WinRT types this way.
_TOAST_SCRIPT = """\
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
try {{ [Console]::OutputEncoding = [Text.UTF8Encoding]::new($false) }} catch {{ }}
try {{
    $null = [Windows.UI.Notifications.ToastNotificationManager, Windows.UI.Notifications, ContentType = WindowsRuntime]
    $null = [Windows.Data.Xml.Dom.XmlDocument, Windows.Data.Xml.Dom.XmlDocument, ContentType = WindowsRuntime]
    $xml = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('{xml_base64}'))
    $doc = New-Object Windows.Data.Xml.Dom.XmlDocument
    $doc.LoadXml($xml)
    $toast = [Windows.UI.Notifications.ToastNotification]::new($doc)
    [Windows.UI.Notifications.ToastNotificationManager]::CreateToastNotifier({app_id}).Show($toast)
}} catch {{
    [Console]::Error.WriteLine($_.Exception.Message)
    exit 1
}}
exit 0
"""  # noqa: E501

_SNORETOAST_EXITS: Final[Mapping[int, str]] = {
    0: "shown", 1: "hidden", 2: "dismissed", 3: "timed out", 4: "button pressed",
    5: "text entered",
}
"""SnoreToast's documented exit codes other than -1 (failed); 1-5 only come with ``-w``."""


def app_id(env: Mapping[str, str]) -> str:
    """``CLAUDE_NOTIFY_APP_ID`` when it looks like an AUMID, else PowerShell's registered one."""
    wanted = env.get("CLAUDE_NOTIFY_APP_ID", "")
    return wanted if _APP_ID.fullmatch(wanted) else POWERSHELL_AUMID


def sound_event(sound: str) -> str | None:
    """The Windows sound event for ``sound`` (``Notification.Mail``), or ``None`` for default.

    Toasts play only system sound events; a file path or a macOS name gets the default sound.
    """
    match = _SOUND_EVENT.fullmatch(sound)
    return match.group(1) if match else None


def xml_escape(text: str) -> str:
    """``text`` safe both as XML character data and inside a double- or single-quoted attribute."""
    return text.translate(_XML_ESCAPES)


def ps_quote(text: str) -> str:
    """A single-quoted PowerShell literal; PowerShell takes all four single quotes as one."""
    return "'" + "".join(c + c if c in _PS_QUOTES else c for c in text) + "'"


def image_uri(icon: str | None, *, wsl: bool) -> str | None:
    """A ``file:///C:/...`` URI for a file (an icon, a log) Windows can read; WSL paths only
    under ``/mnt/X/``."""
    if not icon:
        return None
    if wsl:
        parts = PurePosixPath(icon).parts
        if len(parts) < 4 or parts[:2] != ("/", "mnt") or len(parts[2]) != 1:
            return None
        icon = f"{parts[2].upper()}:\\" + "\\".join(parts[3:])
    path = PureWindowsPath(icon)
    return path.as_uri() if path.is_absolute() else None


def build_toast_xml(n: Notification, *, image: str | None = None,
                    log_uri: str | None = None) -> str:
    """ToastGeneric XML for ``n`` with every user string XML-escaped.

    ``critical`` becomes a reminder with a Dismiss button: it stays on screen until dismissed,
    which is what ``critical`` means elsewhere (a reminder without a button is not kept).
    """
    title = xml_escape(clean_text(n.title, limit=TITLE_LIMIT, newlines=False))
    body = xml_escape(clean_text(n.body, limit=BODY_LIMIT))
    critical = n.urgency == "critical"
    parts = ['<toast scenario="reminder">' if critical else "<toast>",
             '<visual><binding template="ToastGeneric">', f"<text>{title}</text>"]
    if body:
        parts.append(f"<text>{body}</text>")
    if image:
        parts.append(f'<image placement="appLogoOverride" src="{xml_escape(image)}"/>')
    parts.append("</binding></visual>")
    buttons = []
    if log_uri:  # protocol activation: Windows opens the file itself, nobody waits for it
        buttons.append('<action content="Show log" activationType="protocol" '
                       f'arguments="{xml_escape(log_uri)}"/>')
    if critical:
        buttons.append('<action activationType="system" arguments="dismiss" content=""/>')
    if buttons:
        parts.append("<actions>" + "".join(buttons) + "</actions>")
    if n.sound is None:
        parts.append('<audio silent="true"/>')
    elif (event := sound_event(n.sound)) is not None:
        parts.append(f'<audio src="ms-winsoundevent:{event}"/>')
    parts.append("</toast>")
    return "".join(parts)


def build_toast_script(n: Notification, *, aumid: str, wsl: bool = False) -> str:
    """The PowerShell that shows ``n``: fixed code around a base64 literal of the XML."""
    xml = build_toast_xml(n, image=image_uri(n.icon, wsl=wsl),
                          log_uri=image_uri(n.log_path, wsl=wsl))
    encoded = base64.b64encode(xml.encode("utf-8")).decode("ascii")
    return _TOAST_SCRIPT.format(xml_base64=encoded, app_id=ps_quote(aumid))


def build_powershell_argv(n: Notification, *, exe: str, aumid: str,
                          wsl: bool = False) -> list[str]:
    """``powershell.exe -EncodedCommand`` (base64 of UTF-16LE): no quoting rules to get wrong."""
    script = build_toast_script(n, aumid=aumid, wsl=wsl)
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    return [exe, "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass",
            "-EncodedCommand", encoded]


def build_snoretoast_argv(n: Notification, *, exe: str, aumid: str) -> list[str]:
    """The SnoreToast argv. Without ``-w`` it returns once the toast is shown.

    SnoreToast prints its help and exits 0 when the title or message is empty, so neither is.
    Urgency has no SnoreToast option and is not mapped.
    """
    title = clean_text(n.title, limit=TITLE_LIMIT, newlines=False) or " "
    body = clean_text(n.body, limit=BODY_LIMIT) or " "
    argv = [exe, "-t", title, "-m", body, "-appID", aumid]
    if n.icon and PureWindowsPath(n.icon).is_absolute() and n.icon.lower().endswith(".png"):
        argv += ["-p", n.icon]
    if n.sound is None:
        argv.append("-silent")
    elif (event := sound_event(n.sound)) is not None:
        argv += ["-s", event]
    return argv


def _explain_snoretoast(returncode: int, line: str) -> DeliveryResult:
    # Windows reports -1 as the unsigned 4294967295.
    outcome = _SNORETOAST_EXITS.get(returncode)
    if outcome is not None:
        return DeliveryResult(SnoreToastNotifier.name, True, f"SnoreToast: {outcome}")
    code = returncode - 2**32 if returncode >= 2**31 else returncode
    detail = f"SnoreToast failed (exit {code})" + (f": {line}" if line else "")
    return DeliveryResult(SnoreToastNotifier.name, False, detail)


def _find_powershell(host: Host) -> str | None:
    found = find_tool(host, "powershell.exe", "powershell")
    if found is None and host.platform == "win32" and host.env.get("SystemRoot"):
        candidate = Path(host.env["SystemRoot"], "System32/WindowsPowerShell/v1.0/powershell.exe")
        found = str(candidate) if candidate.is_file() else None
    if found is None and host.is_wsl and Path(WSL_POWERSHELL).is_file():
        found = WSL_POWERSHELL
    return found


class SnoreToastNotifier:
    """SnoreToast.exe: a small native toast tool with documented exit codes."""

    name: ClassVar[str] = "snoretoast"
    _tools: ClassVar[tuple[str, ...]] = ("snoretoast", "SnoreToast.exe", "snoretoast-x64.exe")

    def __init__(self, host: Host) -> None:
        self.host = host

    def available(self) -> Availability:
        if self.host.platform != "win32":
            return Availability(False, f"SnoreToast is Windows only (this is {self.host.platform})")
        found = find_tool(self.host, *self._tools)
        if found is None:
            return Availability(False, "SnoreToast not found on PATH")
        return Availability(True, f"SnoreToast at {found}")

    def send(self, notification: Notification, *, timeout: float) -> DeliveryResult:
        exe = find_tool(self.host, *self._tools)
        if exe is None:
            return DeliveryResult(self.name, False, "SnoreToast not found on PATH")
        argv = build_snoretoast_argv(notification, exe=exe, aumid=app_id(self.host.env))
        return run_tool(self.name, argv, timeout=timeout, env=dict(self.host.env),
                        explain=_explain_snoretoast)


class PowerShellToastNotifier:
    """A toast through Windows PowerShell 5.1, present on every Windows 10 and 11."""

    name: ClassVar[str] = "toast"
    _wsl: ClassVar[bool] = False

    def __init__(self, host: Host) -> None:
        self.host = host

    def available(self) -> Availability:
        if self.host.platform != "win32":
            platform = self.host.platform
            return Availability(False, f"native toasts are Windows only (this is {platform})")
        return self._found()

    def _found(self) -> Availability:
        found = _find_powershell(self.host)
        if found is None:
            return Availability(False, "powershell.exe not found")
        return Availability(True, f"Windows PowerShell at {found}")

    def send(self, notification: Notification, *, timeout: float) -> DeliveryResult:
        exe = _find_powershell(self.host)
        if exe is None:
            return DeliveryResult(self.name, False, "powershell.exe not found")
        argv = build_powershell_argv(notification, exe=exe, aumid=app_id(self.host.env),
                                     wsl=self._wsl)
        result = run_tool(self.name, argv, timeout=timeout, env=dict(self.host.env))
        if result.ok:
            return DeliveryResult(self.name, True, "toast shown by Windows PowerShell")
        return result


class WslToastNotifier(PowerShellToastNotifier):
    """The same toast from inside WSL, through the Windows ``powershell.exe``."""

    name: ClassVar[str] = "wsl"
    _wsl: ClassVar[bool] = True

    def available(self) -> Availability:
        if not self.host.is_wsl:
            return Availability(False, "not running inside WSL")
        return self._found()
