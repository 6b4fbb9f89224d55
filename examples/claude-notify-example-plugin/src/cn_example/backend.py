"""A local notification backend: each notification becomes one JSON line appended to the file
``$CN_EXAMPLE_FILE`` names. Chosen with ``claude-notify run --backend file -- …`` or
``backend = "file"`` in the config file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from claude_notify.notifiers.base import Availability, DeliveryResult, Host, Notification

plugin_api = 1  # the claude-notify plugin interface this was written for


class FileNotifier:
    name: ClassVar[str] = "file"
    plugin_api: ClassVar[int] = 1

    def __init__(self, host: Host) -> None:
        self.path = host.env.get("CN_EXAMPLE_FILE", "")

    def available(self) -> Availability:
        """Cheap and without side effects: only whether there is somewhere to write."""
        if not self.path:
            return Availability(False, "CN_EXAMPLE_FILE is not set")
        return Availability(True, f"appends to {self.path}")

    def send(self, notification: Notification, *, timeout: float) -> DeliveryResult:
        """Never raises: a failure is a result the user is told about."""
        line: dict[str, Any] = {"title": notification.title, "body": notification.body,
                                "urgency": notification.urgency}
        try:
            with Path(self.path).open("a", encoding="utf-8") as out:
                out.write(json.dumps(line) + "\n")
        except OSError as exc:
            return DeliveryResult(self.name, False, f"cannot write {self.path}: {exc}")
        return DeliveryResult(self.name, True, f"appended to {self.path}")
