"""Notification text from one Markdown template, rendered to each channel's dialect.

A template is a little Markdown (``**bold**``, ``*italic*``, ``~~strike~~``, `` `code` ``,
fenced blocks, ``[text](url)``, ``#`` headings, ``-`` bullets) with Jinja expressions over the
task's fields. Rendering has three steps, so that the *values* (commands, log tails: untrusted)
are never read as markup in any dialect:

1. Jinja renders the template in a sandbox. Every ``{{ … }}`` result goes through ``finalize``,
   which files the value away and emits an opaque placeholder instead of the text.
2. A small Markdown parser reads the result: only the template's own text can make markup.
3. A dialect writer emits Telegram HTML, Discord Markdown, Feishu ``lark_md``, e-mail HTML or
   plain text (e-mail text, SMS), escaping each value for the place it lands in.

Steps 2 and 3 are :mod:`~claude_notify.cloud.server.channels.markdown`; the text helpers the
adapters share (:func:`clean`, :func:`utf16_len`, :func:`trim_top`) are
:mod:`~claude_notify.cloud.server.channels.text`.

Why Jinja's :class:`~jinja2.sandbox.SandboxedEnvironment` rather than a home-made syntax: it is
maintained for exactly this (user-written templates), users already know its ``{% if %}`` and
filters, and its sandbox is defence in depth behind our own rule: a template is parsed when it is
saved and refused unless every node is on a short allow-list (names of the event's fields,
constants, ``if``, comparisons, a few filters). No loops, calls, attribute or item access, or
arithmetic, so no escape from the sandbox, no I/O and no way to make rendering slow or large.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from claude_notify.cloud.server.channels.markdown import (
    DIALECTS,
    Dialect,
    parse,
    placeholder,
    write,
)
from claude_notify.cloud.server.channels.render import VERBS, compact_duration, headline
from claude_notify.cloud.server.channels.text import clean, trim_top, utf16_len

__all__ = [
    "DEFAULT_TEMPLATE",
    "FIELDS",
    "MAX_NESTING",
    "MAX_TEMPLATE_CHARS",
    "NOTICE_TEMPLATE",
    "SAMPLE_FIELDS",
    "Template",
    "TemplateError",
    "body_fields",
    "cached",
    "compile_template",
    "fields_of",
    "task_link",
]

MAX_TEMPLATE_CHARS: Final = 4000
FIELDS: Final = (
    "headline", "command", "status", "outcome", "icon", "exit_code", "signal", "duration",
    "duration_s", "host", "cwd", "message", "title", "match", "tail", "link", "task_id",
    "type", "source", "started_at", "ended_at",
)  # fmt: skip
"""What a template can name: the event's own fields plus a few ready-made ones."""

_FILTERS: Final = frozenset(
    {"default", "d", "upper", "lower", "title", "capitalize", "trim", "truncate", "length",
     "int", "round", "abs", "string"}
)  # fmt: skip
_TESTS: Final = frozenset({"defined", "none", "number", "string", "eq", "ne"})

DEFAULT_TEMPLATE: Final = """\
**{{ headline }}**
{% if host %}Host: {{ host }}
{% endif %}{% if cwd %}Directory: {{ cwd }}
{% endif %}{% if message %}{{ message }}
{% endif %}{% if match %}Matched: `{{ match }}`
{% endif %}{% if tail %}
```
{{ tail }}
```
{% endif %}"""
"""The default body for channels without one of their own (Discord, Feishu, SMS and e-mail have
theirs, beside their adapters); channels with structured cards use parts of it."""

class TemplateError(ValueError):
    """The template cannot be used; the message says why in one line."""


# --------------------------------------------------------------------------- values


def fields_of(event: Mapping[str, Any], *, link: str | None) -> dict[str, Any]:
    """The values a template sees, from a task event (``TaskEvent.to_dict``)."""
    icon, verb = VERBS.get(str(event.get("status")), ("ℹ️", "ended"))
    duration = event.get("duration_s")
    values: dict[str, Any] = {
        "headline": headline(dict(event)),
        "outcome": verb,
        "icon": icon,
        "duration": compact_duration(float(duration)) if isinstance(duration, int | float) else "",
        "link": link or "",
    }
    for name in FIELDS:
        if name not in values:
            value = event.get(name)
            values[name] = "" if value is None else value
    return {k: clean(v) if isinstance(v, str) else v for k, v in values.items()}


# --------------------------------------------------------------------------- compiling


def _environment() -> Any:
    from jinja2 import pass_context
    from jinja2.sandbox import SandboxedEnvironment

    class Env(SandboxedEnvironment):
        def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
            return False  # templates see plain values; there is nothing to reach through

        def is_safe_callable(self, obj: Any) -> bool:
            return False

    @pass_context
    def mark(ctx: Any, value: Any) -> str:
        collector: _Collector = ctx["_collector"]
        return collector.mark(value)

    env = Env(autoescape=False, keep_trailing_newline=True)
    env.globals.clear()
    env.filters = {k: v for k, v in env.filters.items() if k in _FILTERS}
    env.filters["_mark"] = mark
    env.tests = {k: v for k, v in env.tests.items() if k in _TESTS}
    return env


_ENV: Any = None


def _env() -> Any:
    global _ENV
    if _ENV is None:
        _ENV = _environment()
    return _ENV


def _allowed_nodes() -> tuple[type, ...]:
    from jinja2 import nodes

    return (
        nodes.Template, nodes.Output, nodes.TemplateData, nodes.Name, nodes.Const, nodes.If,
        nodes.CondExpr, nodes.Filter, nodes.Test, nodes.Compare, nodes.Operand, nodes.And,
        nodes.Or, nodes.Not, nodes.Concat,
    )  # fmt: skip


def _check_tree(tree: Any) -> None:
    from jinja2 import nodes

    allowed = _allowed_nodes()
    for node in _walk(tree):
        if not isinstance(node, allowed):
            raise TemplateError(f"templates cannot use {type(node).__name__.lower()} expressions")
        if isinstance(node, nodes.Name) and node.name not in FIELDS:
            raise TemplateError(f"unknown field {node.name!r}: use one of {', '.join(FIELDS)}")
        if isinstance(node, nodes.Filter) and node.name not in _FILTERS:
            raise TemplateError(f"filter {node.name!r} is not available")
        if isinstance(node, nodes.Test) and node.name not in _TESTS:
            raise TemplateError(f"test {node.name!r} is not available")
        if isinstance(node, nodes.Const) and isinstance(node.value, str) and len(node.value) > 200:
            raise TemplateError("string constants are limited to 200 characters")


MAX_NESTING: Final = 40
"""How deep a template's expressions and ``if`` blocks may nest. Jinja turns each level into a
nested Python block or call, and Python refuses 100 levels of indentation or 200 parentheses."""

_TOO_DEEP: Final = f"templates cannot nest more than {MAX_NESTING} levels deep"


def _walk(node: Any, depth: int = 0) -> Iterator[Any]:
    if depth > MAX_NESTING:
        raise TemplateError(_TOO_DEEP)
    yield node
    for child in node.iter_child_nodes():
        yield from _walk(child, depth + 1)


@dataclass(frozen=True, slots=True)
class Template:
    """A checked template, ready to render any number of times."""

    source: str
    _compiled: Any

    def render(self, fields: Mapping[str, Any], dialect: Dialect) -> str:
        """The message body in ``dialect``; values are escaped for wherever they land."""
        collector = _Collector()
        marked = self._compiled.render({**fields, "_collector": collector})
        return write(parse(marked), collector.values, dialect)

    def render_fitted(
        self,
        fields: Mapping[str, Any],
        dialect: Dialect,
        *,
        limit: int,
        measure: Callable[[str], int] = utf16_len,
    ) -> str:
        """:meth:`render`, with the tail (then the longest other value) trimmed from the top
        until ``measure`` of the result is within ``limit``."""
        values = dict(fields)
        for _ in range(12):
            out = self.render(values, dialect)
            over = measure(out) - limit
            if over <= 0:
                return out
            name = "tail" if values.get("tail") else _longest(values)
            if name is None:
                break
            text = str(values[name])
            per_char = max(utf16_len(text) / len(text), 1.0)  # emoji: two units a character
            keep = len(text) - int((over + 40) / per_char) - 1
            values[name] = trim_top(text, keep) if keep > 0 else ""
        out = self.render({k: v for k, v in values.items() if not isinstance(v, str)}, dialect)
        return out if measure(out) <= limit else ""


def _longest(values: dict[str, Any]) -> str | None:
    texts = [(len(v), k) for k, v in values.items() if isinstance(v, str) and v]
    return max(texts)[1] if texts else None


class _Collector:
    """Receives every ``{{ … }}`` value during one render and hands back a placeholder."""

    def __init__(self) -> None:
        self.values: list[str] = []

    def mark(self, value: Any) -> str:
        self.values.append(clean("" if value is None else str(value)))
        return placeholder(len(self.values) - 1)


def compile_template(source: str) -> Template:
    """Check and compile a user's template; :class:`TemplateError` says what is wrong."""
    from jinja2 import TemplateSyntaxError

    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"templates are limited to {MAX_TEMPLATE_CHARS} characters")
    source = clean(source)
    env = _env()
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"line {exc.lineno}: {exc.message}") from None
    except RecursionError:  # Jinja's parser recurses per level: ((((… or `not not not …`
        raise TemplateError(_TOO_DEEP) from None
    _check_tree(tree)
    # Each {{ expr }} becomes {{ expr | _mark }}: the filter files the value with this
    # render's collector (a context variable no template can name) and emits a placeholder.
    try:
        compiled = env.from_string(_route_outputs(tree))
    except (SyntaxError, RecursionError, MemoryError):  # Python's own limits; see MAX_NESTING
        raise TemplateError(_TOO_DEEP) from None
    template = Template(source, compiled)
    for dialect in DIALECTS:  # render errors surface now, when saved, not when a task ends
        try:
            template.render(SAMPLE_FIELDS, dialect)
        except Exception as exc:
            raise TemplateError(f"the template fails on a sample event: {exc}") from None
    return template


def _route_outputs(tree: Any) -> Any:
    """The template with every expression output piped through the ``mark`` filter."""
    from jinja2 import nodes

    for output in tree.find_all(nodes.Output):
        output.nodes = [
            n if isinstance(n, nodes.TemplateData) else nodes.Filter(n, "_mark", [], [], None, None)
            for n in output.nodes
        ]
    return tree


_cache: dict[str, Template] = {}


def cached(source: str | None, default: str = DEFAULT_TEMPLATE) -> Template:
    """A compiled template by source, the default one when ``source`` is empty or broken."""
    key = source or default
    if key not in _cache:
        if len(_cache) > 512:
            _cache.clear()
        try:
            _cache[key] = compile_template(key)
        except TemplateError:
            _cache[key] = cached(None, default)
    return _cache[key]


# --------------------------------------------------------------------------- samples

SAMPLE_FIELDS: Final[dict[str, Any]] = {
    "headline": "✅ make test finished (exit 0, 3m12s)",
    "command": "make test",
    "status": "success",
    "outcome": "finished",
    "icon": "✅",
    "exit_code": 0,
    "signal": "",
    "duration": "3m12s",
    "duration_s": 192.0,
    "host": "build-1",
    "cwd": "/srv/app",
    "message": "",
    "title": "",
    "match": "",
    "tail": "collected 120 items\n120 passed in 190.1s",
    "link": "https://app.example/t/7f3a",
    "task_id": "7f3a",
    "type": "finished",
    "source": "run",
    "started_at": "2025-01-01T12:00:00+00:00",
    "ended_at": "2025-01-01T12:03:12+00:00",
}
"""A plausible event: templates are trial-rendered with it when saved, and previews use it."""


# --------------------------------------------------------------------------- messages


def task_link(app_url: str | None, event: Mapping[str, Any] | None) -> str | None:
    """The dashboard page of the event's task, when the operator configured a dashboard."""
    if not app_url or not event or not event.get("task_id"):
        return None
    from urllib.parse import quote

    return f"{app_url.rstrip('/')}/t/{quote(str(event['task_id']), safe='')}"


def body_fields(
    message: Any, *, app_url: str | None, default: str = DEFAULT_TEMPLATE
) -> tuple[Template, dict[str, Any]]:
    """The template and values for a message: the event's, or a test/verification text."""
    if message.event is not None:
        values = fields_of(message.event, link=task_link(app_url, message.event))
        return cached(message.config.get("template"), default), values
    notice: dict[str, Any] = dict.fromkeys(FIELDS, "")
    notice.update(headline=clean(message.subject), message=clean(message.text))
    return cached(NOTICE_TEMPLATE), notice


NOTICE_TEMPLATE: Final = "**{{ headline }}**\n{{ message }}"
"""Test and verification messages: a bold subject and the text, both shown literally."""
