"""Templates: the sandbox refuses escapes, each dialect renders as its golden file says, and
the API checks a template when it is saved (pro only) and the channel then uses it.

Regenerate the golden files after an intended change with ``UPDATE_GOLDEN=1 pytest …``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from cloud_kit import Account, Mailbox, parse_mail
from fastapi.testclient import TestClient
from standins.kit import event, provider_settings, telegram
from standins.kit import message as event_message
from standins.telegram import TelegramStandIn

from claude_notify.cloud.server.channels import templates
from claude_notify.cloud.server.channels.email import build_email
from claude_notify.cloud.server.channels.markdown import DIALECTS
from claude_notify.cloud.server.settings import Settings

__all__ = ["telegram"]
GOLDEN = Path(__file__).parent / "golden" / "templates"

ESCAPES = [
    "{{ command.__class__.__mro__ }}",
    "{{ command.upper() }}",
    "{{ command['__class__'] }}",
    "{{ self }}",
    "{{ _collector }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ lipsum }}",
    "{{ range(99999999) }}",
    "{% for c in tail %}{% for d in tail %}x{% endfor %}{% endfor %}",
    "{{ tail * 100000 }}",
    "{{ tail ** 9 }}",
    "{{ tail | replace('', tail) }}",
    "{{ tail | attr('__class__') }}",
    "{{ tail | map('upper') }}",
    "{{ tail | _mark }}",
    "{% set x = tail %}{{ x }}",
    "{% macro m() %}{% endmacro %}",
    "{% include '/etc/passwd' %}",
    "{% import 'x' as y %}",
    "{% extends 'base' %}",
    "{{ '%s' % tail }}",
    "{% raw %}{% endraw %}{{ 'a' * 10 }}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_sandbox_escapes_and_expensive_constructs_are_refused(source: str) -> None:
    with pytest.raises(templates.TemplateError):
        templates.compile_template(source)


def test_errors_say_what_is_wrong() -> None:
    for source, message in [
        ("{{ nope }}", "unknown field 'nope'"),
        ("{% if %}", "line 1: Expected an expression"),
        ("{{ tail | wordwrap }}", "filter 'wordwrap' is not available"),
        ("x" * 5000, "limited to 4000 characters"),
    ]:
        with pytest.raises(templates.TemplateError, match=message):
            templates.compile_template(source)


CUSTOM = """\
# {{ icon }} {{ command }} {{ outcome | upper }}
- *host*: `{{ host }}`
- **exit**: {{ exit_code }}{% if duration %} after {{ duration }}{% endif %}
{% if status == "failure" %}~~green~~ red{% endif %}
[Open the task]({{ link }})
```
{{ tail | truncate(60) }}
```"""

CASES = {
    "default": (templates.DEFAULT_TEMPLATE, event()),
    "custom": (CUSTOM, event(status="failure", exit_code=2)),
    "hostile": (
        CUSTOM,
        event(
            command="<b>*x*</b> @everyone [a](javascript:b)",
            host='<at user_id="all"></at>`h`',
            tail="```\n</pre>&amp;\n**bold** _i_ | > # - <@123>",
        ),
    ),
}


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_dialect_rendering_matches_the_golden_file(case: str, dialect: str) -> None:
    source, payload = CASES[case]
    fields = templates.fields_of(payload, link="https://app.example/t/7f3a")
    rendered = templates.compile_template(source).render(fields, dialect)  # type: ignore[arg-type]
    path = GOLDEN / f"{case}.{dialect}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered + "\n", encoding="utf-8")
    assert rendered + "\n" == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("part", ["plain", "html"])
def test_default_email_matches_the_golden_file(part: str) -> None:
    """The e-mail a channel without a custom template sends: both parts from its default."""
    payload = event(status="failure", exit_code=2, message="needs a look", match="FAIL",
                    tail="\x1b[31mFAIL\x1b[0m <b>x</b> \"q\" & 'a'")  # fmt: skip
    mail = build_email(event_message("email", {"address": "dev@example.com"}, payload),
                       sender="notify@example.com", app_url="https://app.example")  # fmt: skip
    body = mail.get_body((part,))
    assert body is not None
    rendered = str(body.get_content()).replace("\r\n", "\n")
    path = GOLDEN / f"email.{part}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(rendered, encoding="utf-8")
    assert rendered == path.read_text(encoding="utf-8")


# ------------------------------------------------------------------------- through the API


@pytest.fixture
def settings(settings: Settings, telegram: TelegramStandIn) -> Settings:
    return settings.replace(**provider_settings(telegram=telegram.base_url))


@pytest.mark.usefixtures("settings")
def test_template_is_checked_when_saved_and_used_for_the_channel(
    client: TestClient, make_user: Callable[..., Account], telegram: TelegramStandIn
) -> None:
    pro, free = make_user(plan="pro"), make_user(plan="free")
    made = client.post("/v1/channels", json={"type": "tg", "config": {}}, headers=pro.headers)
    channel_id = made.json()["id"]
    link = client.post(f"/v1/channels/{channel_id}/link", headers=pro.headers).json()
    chat, sender = {"id": 31, "type": "private"}, {"id": 31, "is_bot": False}
    message = {"message_id": 1, "date": 1, "text": link["command"], "chat": chat, "from": sender}
    update = {"update_id": 1, "message": message}
    client.post("/v1/telegram/webhook", json=update,
                headers={"X-Telegram-Bot-Api-Secret-Token": "hook-secret_123"})  # fmt: skip
    telegram.wait(1)

    url = f"/v1/channels/{channel_id}/template"
    bad = client.put(url, json={"template": "{{ command.__class__ }}"}, headers=pro.headers)
    assert bad.status_code == 422 and "getattr" in bad.json()["error"]["message"]
    other = client.post("/v1/channels", json={"type": "email", "config": {
        "address": "free@example.com"}}, headers=free.headers)  # the one type free may add
    assert client.put(
        f"/v1/channels/{other.json()['id']}/template",
        json={"template": "hi"},
        headers=free.headers,
    ).status_code == 403  # fmt: skip
    saved = client.put(url, json={"template": CUSTOM}, headers=pro.headers)
    assert saved.status_code == 200, saved.text
    assert set(saved.json()["previews"]) == set(DIALECTS)
    assert client.get(f"/v1/channels/{channel_id}", headers=pro.headers).json()["verified"]

    payload = event(status="failure", exit_code=3)
    payload.pop("event_id")
    client.post("/v1/events", json=payload, headers=pro.headers)
    [_, shown] = telegram.wait(2)
    text = shown.displayed["text"]
    assert text.startswith("❌ make test FAILED\n• host: build-1\n• exit: 3 after 3m12s")
    assert "Open the task" in text
    entity_types = {e["type"] for e in shown.displayed["entities"]}
    assert {"b", "i", "code", "s", "a", "pre"} <= entity_types

    assert client.delete(url, headers=pro.headers).status_code == 204
    assert "template" not in client.get(f"/v1/channels/{channel_id}",
                                        headers=pro.headers).json()["config"]  # fmt: skip


@pytest.mark.usefixtures("settings")
def test_email_channel_renders_both_parts_from_the_custom_template(
    client: TestClient,
    make_user: Callable[..., Account],
    verified_email: Callable[[TestClient, Account, str], str],
    smtp_server: Mailbox,
) -> None:
    pro = make_user(plan="pro")
    channel_id = verified_email(client, pro, "ops@example.com")
    url = f"/v1/channels/{channel_id}/template"
    assert client.put(url, json={"template": CUSTOM}, headers=pro.headers).status_code == 200

    _, payload = CASES["hostile"]
    payload = {k: v for k, v in payload.items() if k != "event_id"}
    before = smtp_server.count()
    assert client.post("/v1/events", json=payload, headers=pro.headers).status_code in (200, 202)
    mail = parse_mail(smtp_server.wait(before + 1)[before])
    assert mail["To"] == "ops@example.com"
    assert mail["Subject"] == "✅ <b>*x*</b> @everyone [a](javascript:b) finished (exit 0, 3m12s)"
    text, page = mail.get_body(("plain",)), mail.get_body(("html",))
    assert text is not None and page is not None
    # Both parts come from the same template: the text as written, the HTML with every value
    # escaped (the hostile command and log show literally, the template's link is a link).
    plain = text.get_content().replace("\r\n", "\n")  # lines end in CRLF on the wire
    assert plain == (GOLDEN / "hostile.text.txt").read_text(encoding="utf-8")
    html_body = page.get_content().replace("\r\n", "\n")
    golden_html = (GOLDEN / "hostile.html.txt").read_text(encoding="utf-8").rstrip("\n")
    assert html_body.startswith("<!doctype html><html><body>" + golden_html)
    assert "<b>*x*</b>" not in html_body and "&lt;b&gt;*x*&lt;/b&gt;" in html_body

    assert client.delete(url, headers=pro.headers).status_code == 204  # back to the default
    client.post("/v1/events", json=payload, headers=pro.headers)
    default = parse_mail(smtp_server.wait(before + 2)[before + 1]).get_body(("plain",))
    assert default is not None and "Last output:" in default.get_content()


def test_preview_needs_no_channel(client: TestClient, make_user: Callable[..., Account]) -> None:
    user = make_user()
    answer = client.post("/v1/templates/preview", json={"template": "**{{ command }}**"},
                         headers=user.headers)  # fmt: skip
    assert answer.json()["previews"]["telegram"] == "<b>make test</b>"
