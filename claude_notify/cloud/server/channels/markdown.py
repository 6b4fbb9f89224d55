"""The templates' little Markdown: parsed into blocks, written out in each channel's dialect.

``**bold**``, ``*italic*`` (or ``_italic_``), ``~~strike~~``, `` `code` ``, fenced blocks,
``[text](url)``, ``#`` headings and ``-`` bullets. The parser reads the *rendered* template, in
which every value is still an opaque placeholder, so only the template's own text makes markup;
the writer puts each value back escaped for the place it lands in: Telegram HTML, Discord
Markdown, Feishu ``lark_md``, e-mail HTML or plain text (e-mail text, SMS).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from claude_notify.cloud.server.channels.text import PLACEHOLDER_CLOSE, PLACEHOLDER_OPEN

Dialect = Literal["telegram", "discord", "lark_md", "html", "text"]
DIALECTS: Final[tuple[Dialect, ...]] = ("telegram", "discord", "lark_md", "html", "text")

_PLACEHOLDER = re.compile(f"{PLACEHOLDER_OPEN}(\\d+){PLACEHOLDER_CLOSE}")


def placeholder(index: int) -> str:
    """How the value at ``index`` stands in the rendered template until :func:`write`."""
    return f"{PLACEHOLDER_OPEN}{index}{PLACEHOLDER_CLOSE}"


# --------------------------------------------------------------------------- parsing


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


def discord_escape(s: str) -> str:
    """Text Discord shows literally: every character its Markdown (or a mention) reads escaped."""
    return re.sub(r"([\\*_~`|>#\-\[\]()<:@])", r"\\\1", s)


_LARK_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "*": "&#42;", "_": "&#95;",
                  "~": "&#126;", "[": "&#91;", "]": "&#93;", "(": "&#40;", ")": "&#41;",
                  "`": "&#96;"}  # fmt: skip


def lark_escape(s: str) -> str:
    """Text ``lark_md`` shows literally: its markup characters as HTML entities."""
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
    "html": _Style(  # e-mail: quotes escaped too, as strict as an attribute needs
        text=html.escape,
        code=lambda s: f"<code>{html.escape(s)}</code>",
        pre=lambda s: f"<pre>{html.escape(s)}</pre>",
        bold=("<strong>", "</strong>"),
        italic=("<em>", "</em>"),
        strike=("<s>", "</s>"),
        link=_a,
    ),
    "discord": _Style(
        text=discord_escape,
        code=lambda s: "`" + s.replace("`", "ˋ") + "`",
        pre=lambda s: "```\n" + s.replace("```", "`\u200b`\u200b`") + "\n```",
        bold=("**", "**"),
        italic=("*", "*"),
        strike=("~~", "~~"),
        link=lambda url, label: f"[{label}](<{url}>)",
    ),
    "lark_md": _Style(
        text=lark_escape,
        code=lark_escape,
        pre=lambda s: "\n".join(lark_escape(line) for line in s.split("\n")),
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


def write(blocks: list[Node], values: list[str], dialect: Dialect) -> str:  # long: see below
    """Emit parsed blocks in ``dialect``, putting each value back in, escaped for its place.

    The inline walker (``run``) and the block loop share ``fill`` and the dialect's style, so
    they stay together as closures rather than functions passing both around."""
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
