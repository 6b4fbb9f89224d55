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

Why Jinja's :class:`~jinja2.sandbox.SandboxedEnvironment` rather than a home-made syntax: it is
maintained for exactly this (user-written templates), users already know its ``{% if %}`` and
filters, and its sandbox is defence in depth behind our own rule: a template is parsed when it is
saved and refused unless every node is on a short allow-list (names of the event's fields,
constants, ``if``, comparisons, a few filters). No loops, calls, attribute or item access, or
arithmetic, so no escape from the sandbox, no I/O and no way to make rendering slow or large.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

Dialect = Literal["telegram", "discord", "lark_md", "html", "text"]
DIALECTS: Final[tuple[Dialect, ...]] = ("telegram", "discord", "lark_md", "html", "text")

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
_OPEN, _CLOSE = "\ue000", "\ue001"
_PLACEHOLDER = re.compile(f"{_OPEN}(\\d+){_CLOSE}")
_FORBIDDEN_CHARS = re.compile(f"[{_OPEN}{_CLOSE}]")

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
"""The default body for every channel; channels with structured cards use parts of it."""

SMS_TEMPLATE: Final = "{{ headline }}{% if host %} on {{ host }}{% endif %}"


class TemplateError(ValueError):
    """The template cannot be used; the message says why in one line."""


# --------------------------------------------------------------------------- values


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")


def clean(text: str) -> str:
    """Text every provider accepts: lone surrogates (undecodable bytes) become U+FFFD,
    control characters other than newline and tab are dropped, and our placeholder
    characters cannot be forged."""
    valid = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return _FORBIDDEN_CHARS.sub("", _CONTROL.sub("", valid.replace("\r\n", "\n")))


def utf16_len(text: str) -> int:
    """Length as Telegram and Discord count it (UTF-16 code units: an emoji is two)."""
    return len(text.encode("utf-16-le")) // 2


def fields_of(event: Mapping[str, Any], *, link: str | None) -> dict[str, Any]:
    """The values a template sees, from a task event (``TaskEvent.to_dict``)."""
    from claude_notify.cloud.server.channels.render import _VERBS, _duration, headline

    icon, verb = _VERBS.get(str(event.get("status")), ("ℹ️", "ended"))
    duration = event.get("duration_s")
    values: dict[str, Any] = {
        "headline": headline(dict(event)),
        "outcome": verb,
        "icon": icon,
        "duration": _duration(float(duration)) if isinstance(duration, int | float) else "",
        "link": link or "",
    }
    for name in FIELDS:
        if name not in values:
            value = event.get(name)
            values[name] = "" if value is None else value
    return {k: clean(v) if isinstance(v, str) else v for k, v in values.items()}


def trim_top(text: str, keep: int) -> str:
    """The last ``keep`` characters of ``text``, from a line start where possible, after a
    marker saying how much was cut."""
    if len(text) <= keep:
        return text
    cut = len(text) - max(keep, 0)
    newline = text.find("\n", cut)
    if newline != -1 and newline - cut < 200:
        cut = newline + 1
    return f"[… {cut} characters trimmed]\n" + text[cut:]


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
        return f"{_OPEN}{len(self.values) - 1}{_CLOSE}"


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


# --------------------------------------------------------------------------- Markdown


@dataclass(frozen=True, slots=True)
class Node:
    kind: str
    """``text``, ``bold``, ``italic``, ``strike``, ``code``, ``link`` (inline); ``line``,
    ``heading``, ``bullet``, ``pre`` (blocks)."""
    text: str = ""
    children: tuple[Node, ...] = ()
    url: str = ""


_INLINE = re.compile(
    r"(?P<code>`[^`\n]+`)"
    r"|\*\*(?P<bold>.+?)\*\*"
    r"|~~(?P<strike>.+?)~~"
    r"|\[(?P<ltext>[^\]\n]+)\]\((?P<url>[^)\s]+)\)"
    r"|(?<![\w*])\*(?P<ital>[^*\n]+?)\*(?![\w*])"
    r"|(?<![\w_])_(?P<ital2>[^_\n]+?)_(?![\w_])"
)


def parse(marked: str) -> list[Node]:
    """Blocks of the rendered template; placeholders stay opaque inside text."""
    blocks: list[Node] = []
    lines = marked.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip().startswith("```"):
            body = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append(Node("pre", "\n".join(body)))
        elif m := re.match(r"#{1,6}\s+(.*)", line):
            blocks.append(Node("heading", children=inline(m.group(1))))
        elif m := re.match(r"[-*]\s+(.*)", line):
            blocks.append(Node("bullet", children=inline(m.group(1))))
        else:
            blocks.append(Node("line", children=inline(line)))
        i += 1
    while blocks and blocks[-1].kind == "line" and not blocks[-1].children:
        blocks.pop()
    return blocks


def inline(text: str) -> tuple[Node, ...]:
    out: list[Node] = []
    pos = 0
    for m in _INLINE.finditer(text):
        if m.start() > pos:
            out.append(Node("text", text[pos : m.start()]))
        if m.group("code"):
            out.append(Node("code", m.group("code")[1:-1]))
        elif m.group("bold") is not None:
            out.append(Node("bold", children=inline(m.group("bold"))))
        elif m.group("strike") is not None:
            out.append(Node("strike", children=inline(m.group("strike"))))
        elif m.group("ltext") is not None:
            out.append(Node("link", children=inline(m.group("ltext")), url=m.group("url")))
        else:
            out.append(Node("italic", children=inline(m.group("ital") or m.group("ital2"))))
        pos = m.end()
    if pos < len(text):
        out.append(Node("text", text[pos:]))
    return tuple(out)


# --------------------------------------------------------------------------- dialects


def _discord_text(s: str) -> str:
    return re.sub(r"([\\*_~`|>#\-\[\]()<:@])", r"\\\1", s)


_LARK_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "*": "&#42;", "_": "&#95;",
                  "~": "&#126;", "[": "&#91;", "]": "&#93;", "(": "&#40;", ")": "&#41;",
                  "`": "&#96;"}  # fmt: skip


def _lark_text(s: str) -> str:
    return "".join(_LARK_ENTITIES.get(c, c) for c in s)


@dataclass(frozen=True, slots=True)
class _Style:
    text: Callable[[str], str]
    code: Callable[[str], str]
    pre: Callable[[str], str]
    bold: tuple[str, str]
    italic: tuple[str, str]
    strike: tuple[str, str]
    link: Callable[[str, str], str]
    bullet: str = "• "


def _a(url: str, label: str) -> str:
    return f'<a href="{html.escape(url, quote=True)}">{label}</a>'


_STYLES: Final[dict[Dialect, _Style]] = {
    "telegram": _Style(
        text=lambda s: html.escape(s, quote=False),
        code=lambda s: f"<code>{html.escape(s, quote=False)}</code>",
        pre=lambda s: f"<pre>{html.escape(s, quote=False)}</pre>",
        bold=("<b>", "</b>"),
        italic=("<i>", "</i>"),
        strike=("<s>", "</s>"),
        link=_a,
    ),
    "html": _Style(
        text=lambda s: html.escape(s, quote=False),
        code=lambda s: f"<code>{html.escape(s, quote=False)}</code>",
        pre=lambda s: f"<pre>{html.escape(s, quote=False)}</pre>",
        bold=("<strong>", "</strong>"),
        italic=("<em>", "</em>"),
        strike=("<s>", "</s>"),
        link=_a,
    ),
    "discord": _Style(
        text=_discord_text,
        code=lambda s: "`" + s.replace("`", "ˋ") + "`",
        pre=lambda s: "```\n" + s.replace("```", "`\u200b`\u200b`") + "\n```",
        bold=("**", "**"),
        italic=("*", "*"),
        strike=("~~", "~~"),
        link=lambda url, label: f"[{label}](<{url}>)",
    ),
    "lark_md": _Style(
        text=_lark_text,
        code=_lark_text,
        pre=lambda s: "\n".join(_lark_text(line) for line in s.split("\n")),
        bold=("**", "**"),
        italic=("*", "*"),
        strike=("~~", "~~"),
        link=lambda url, label: f"[{label}]({url})",
    ),
    "text": _Style(
        text=lambda s: s,
        code=lambda s: s,
        pre=lambda s: s,
        bold=("", ""),
        italic=("", ""),
        strike=("", ""),
        link=lambda url, label: f"{label} ({url})" if label != url else url,
        bullet="- ",
    ),
}


def write(blocks: list[Node], values: list[str], dialect: Dialect) -> str:
    """Emit parsed blocks in ``dialect``, putting each value back in, escaped for its place."""
    style = _STYLES[dialect]

    def fill(s: str) -> str:
        return _PLACEHOLDER.sub(lambda m: values[int(m.group(1))], s)

    def literal(s: str, escape: Callable[[str], str]) -> str:
        return escape(fill(s))

    def run(nodes: tuple[Node, ...]) -> str:
        out = []
        for node in nodes:
            if node.kind == "text":
                out.append(literal(node.text, style.text))
            elif node.kind == "code":
                out.append(literal(node.text, style.code))
            elif node.kind == "link":
                label, url = run(node.children), fill(node.url)
                safe = url.startswith(("https://", "http://")) and not re.search(r"[\s<>\"]", url)
                out.append(style.link(url, label) if safe else label)
            else:
                start, end = getattr(style, node.kind)
                out.append(f"{start}{run(node.children)}{end}")
        return "".join(out)

    lines = []
    for block in blocks:
        if block.kind == "pre":
            body = fill(block.text)
            lines.append(style.pre(body) if body else "")
        elif block.kind == "heading":
            start, end = style.bold
            lines.append(f"{start}{run(block.children)}{end}")
        elif block.kind == "bullet":
            lines.append(style.bullet + run(block.children))
        else:
            lines.append(run(block.children))
    if dialect == "html":
        return "<div>" + "<br>\n".join(lines).strip("\n") + "</div>"
    return "\n".join(lines).strip("\n")


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
