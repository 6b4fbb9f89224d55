"""Teams Workflows webhook stand-in: ``POST /workflows/{id}/triggers/manual/paths/invoke?…&sig=``.

It checks what the "Post to a channel when a webhook request is received" flow needs: JSON with
``type: message`` and one Adaptive Card attachment (version ≤ 1.5, known element types), the
signature in the query, and Teams' 28 KB message limit (413 over it). It records what Teams
would render as Markdown — text in ``TextBlock`` and ``FactSet`` — apart from plain text runs,
and answers 202 as the flow does.
"""

from __future__ import annotations

import re
from typing import Any

from standins import Answer, Request, StandIn, json_body

_PATH = re.compile(r"^/workflows/([0-9a-f]+)/triggers/manual/paths/invoke$")
_ELEMENTS = {"TextBlock", "RichTextBlock", "FactSet", "Container", "ColumnSet", "Image"}
_LINK = re.compile(r"\[[^\]]*\]\([^)]*\)")


def _markdown(element: dict[str, Any]) -> list[str]:
    """The strings of ``element`` that Teams reads as Markdown."""
    if element.get("type") == "TextBlock":
        return [str(element.get("text", ""))]
    if element.get("type") == "FactSet":
        return [str(f.get("value", "")) for f in element.get("facts", [])]
    return []


class TeamsStandIn(StandIn):
    def __init__(self) -> None:
        super().__init__()
        self.flows = {"a1b2c3": "S1GnAtUrE"}

    def url(self, flow: str = "a1b2c3", host: str = "prod-00.westus.logic.azure.com") -> str:
        """The user-facing URL (on Microsoft's host; tests send its path and query here)."""
        return (f"https://{host}/workflows/{flow}/triggers/manual/paths/invoke"
                f"?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig="
                f"{self.flows[flow]}")

    def handle(self, request: Request) -> Answer:
        match = _PATH.match(request.path)
        if request.method != "POST" or match is None or match.group(1) not in self.flows:
            return 404, {"error": {"code": "WorkflowNotFound", "message": "not found"}}, {}
        if request.query.get("sig") != [self.flows[match.group(1)]]:
            return 401, {"error": {"code": "DirectApiInvalidAuthorizationSignature",
                                   "message": "bad signature"}}, {}
        if len(request.body) > 28 * 1024:
            return 413, {"error": {"code": "MessageTooLarge", "message": "over 28 KB"}}, {}
        body, bad = json_body(request, lambda why: (400, {"error": {"code": "InvalidRequest",
                                                                     "message": why}}, {}))
        if bad is not None:
            return bad
        attachments = body.get("attachments") if isinstance(body, dict) else None
        if body.get("type") != "message" or not isinstance(attachments, list) \
                or len(attachments) != 1:
            return 400, {"error": {"code": "InvalidRequest", "message": "one card"}}, {}
        card = attachments[0].get("content") or {}
        if attachments[0].get("contentType") != "application/vnd.microsoft.card.adaptive" \
                or card.get("type") != "AdaptiveCard" or str(card.get("version")) > "1.5":
            return 400, {"error": {"code": "InvalidRequest", "message": "not a card"}}, {}
        elements = card.get("body") or []
        if any(e.get("type") not in _ELEMENTS for e in elements):
            return 400, {"error": {"code": "InvalidRequest", "message": "element type"}}, {}
        markdown = [t for e in elements for t in _markdown(e)]
        request.displayed = {"card": card, "markdown": markdown,
                             "links": [m for t in markdown for m in _LINK.findall(t)]}
        return 202, None, {}
