"""Terminal output as safe HTML with its colours: SGR escapes become ``<span class="ansi-…">``.

The text is exactly what the ``text`` filter shows (:func:`claude_notify.render.clean_output`,
then format characters as U+FFFD), found with the same patterns: every escape that
``clean_output`` removes is removed here too, and only the SGR ones (``ESC [ … m``) are read on
their way out. Everything else between them is escaped with markupsafe. The markup is flat: at
most one span is open at a time, closed and reopened where the style changes between two
pieces of text, so no stream of escapes can nest elements; the work is one pass over the text.

What is drawn (the colours themselves are per theme in ``static/app.css``): bold, dim, italic,
underline, reverse; the 8 colours and 8 bright ones as foreground and background; 256-colour
and 24-bit colours as the nearest of those 16. Reverse is the simple kind: the foreground colour
(or the default one) becomes the background and the text takes the page's code background; a
background colour set under reverse is not drawn. Dim is the page's muted colour, which a
colour set with it overrides. A newline paints nothing, so it stays in whichever span is open.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache, lru_cache
from typing import Final, NamedTuple

from markupsafe import Markup, escape

from claude_notify.render import CONTROLS, ESCAPES

NAMES: Final = ("black", "red", "green", "yellow", "blue", "magenta", "cyan", "white")
"""The 16 colours' class names: ``ansi-red``, ``ansi-bright-red``, ``ansi-bg-red``…"""

# xterm's default 16 colours: what 256-colour and 24-bit colours are measured against.
_XTERM16: Final = (
    (0, 0, 0), (205, 0, 0), (0, 205, 0), (205, 205, 0), (0, 0, 238), (205, 0, 205),
    (0, 205, 205), (229, 229, 229), (127, 127, 127), (255, 0, 0), (0, 255, 0), (255, 255, 0),
    (92, 92, 255), (255, 0, 255), (0, 255, 255), (255, 255, 255),
)
_CUBE: Final = (0, 95, 135, 175, 215, 255)
_SGR: Final = re.compile(r"\x1b\[([0-9;:]*)m")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_NON_ASCII: Final = re.compile(r"[^\x00-\x7f]+")


class Style(NamedTuple):
    bold: bool = False
    dim: bool = False
    italic: bool = False
    underline: bool = False
    reverse: bool = False
    fg: int | None = None  # 0-15
    bg: int | None = None  # 0-15


PLAIN: Final = Style()


def to_html(value: object) -> Markup:
    """``value`` as text (``str(value or "")``) in safe markup with its terminal colours."""
    text = _SURROGATE.sub("\ufffd", str(value or "")).replace("\r\n", "\n")
    out: list[str] = []  # escaped text and our own tags
    line: list[tuple[str, str]] = []  # this line's (classes, text): a later \r may drop them
    opened = ""  # the classes of the span open at the end of ``out``, "" for none
    style = PLAIN
    classes = ""

    def flush() -> None:
        nonlocal opened
        for wanted, raw in line:
            shown = _shown(raw)
            if not shown:
                continue
            if wanted != opened:
                if opened:
                    out.append("</span>")
                if wanted:
                    out.append(f'<span class="{wanted}">')
                opened = wanted
            out.append(shown)
        line.clear()

    def take(piece: str) -> None:
        for number, part in enumerate(piece.split("\n")):
            if number:
                flush()
                out.append("\n")
            if "\r" in part:  # a redrawn line keeps only its last state, as clean_output does
                line.clear()
                part = part.rsplit("\r", 1)[-1]
            if part:
                line.append((classes, part))

    start = 0
    for found in ESCAPES.finditer(text):
        if found.start() > start:
            take(text[start:found.start()])
        start = found.end()
        sgr = _SGR.fullmatch(found.group())
        if sgr:
            params = sgr.group(1)
            style = (_apply_sgr_cached if len(params) <= 32 else apply_sgr)(style, params)
            classes = classes_of(style)
    take(text[start:])
    flush()
    if opened:
        out.append("</span>")
    return Markup("".join(out))  # noqa: S704 - escaped text and our tags: see _shown


def _shown(raw: str) -> str:
    """One piece of text as the ``text`` filter shows it, escaped."""
    kept = CONTROLS.sub("", raw)
    if not kept.isascii():  # only non-ASCII characters can be format characters
        kept = _NON_ASCII.sub(_format_characters, kept)
    return str(escape(kept))


def _format_characters(found: re.Match[str]) -> str:
    return "".join("\ufffd" if unicodedata.category(c) in ("Cf", "Co", "Cs") else c
                   for c in found.group())


def apply_sgr(style: Style, params: str) -> Style:
    """The style after ``ESC [ params m``; codes this does not draw are skipped."""
    codes = params.split(";")
    index = 0
    while index < len(codes):
        code = codes[index]
        index += 1
        if ":" in code:  # 38:5:n, 38:2::r:g:b, 4:3 (curly underline)
            sub = code.split(":")
            number = _number(sub[0])
            if number in (38, 48):
                style = _colour(style, number, _extended(sub[1:]))
            elif number == 4:
                style = style._replace(underline=sub[1] not in ("", "0"))
            continue
        number = _number(code or "0")
        if number in (38, 48, 58):
            kind = codes[index] if index < len(codes) else ""
            if kind not in ("5", "2"):  # no telling where its arguments end: read no further
                break
            width = 2 if kind == "5" else 4
            picked = _extended(codes[index:index + width])
            index += width
            if number != 58:  # underline colour: read past, not drawn
                style = _colour(style, number, picked)
        elif number is not None:
            style = _simple(style, number)
    return style


# Output repeats a few codes: remember short ones (long ones would pin memory between pages).
_apply_sgr_cached: Final = lru_cache(maxsize=1024)(apply_sgr)


def _simple(style: Style, number: int) -> Style:
    if number == 0:
        return PLAIN
    if number in _ON:
        return style._replace(**{_ON[number]: True})
    if number in _OFF:
        return style._replace(**dict.fromkeys(_OFF[number], False))
    if 30 <= number <= 37 or 90 <= number <= 97:
        return style._replace(fg=number % 10 + (8 if number >= 90 else 0))
    if 40 <= number <= 47 or 100 <= number <= 107:
        return style._replace(bg=number % 10 + (8 if number >= 100 else 0))
    if number == 39:
        return style._replace(fg=None)
    if number == 49:
        return style._replace(bg=None)
    return style


_ON: Final = {1: "bold", 2: "dim", 3: "italic", 4: "underline", 7: "reverse"}
_OFF: Final = {22: ("bold", "dim"), 23: ("italic",), 24: ("underline",), 27: ("reverse",)}


def _colour(style: Style, number: int, picked: int | None) -> Style:
    if picked is None:
        return style
    return style._replace(fg=picked) if number == 38 else style._replace(bg=picked)


def _extended(args: list[str]) -> int | None:
    """``5;n`` or ``2;r;g;b`` (``2;id;r;g;b`` too) as one of the 16 colours, or None."""
    if len(args) >= 2 and args[0] == "5":
        index = _number(args[1])
        return nearest_of_256(index) if index is not None and index < 256 else None
    if len(args) >= 4 and args[0] == "2":
        rgb = [_number(a) for a in args[-3:]]
        if all(c is not None and c < 256 for c in rgb):
            red, green, blue = (c or 0 for c in rgb)
            return nearest(red, green, blue)
    return None


def _number(text: str) -> int | None:
    """A parameter as a number; None when it is not one or is too long to mean anything."""
    return int(text) if text.isdigit() and text.isascii() and len(text) <= 6 else None


@cache
def nearest_of_256(index: int) -> int:
    """The 16-colour stand-in for xterm colour ``index`` (0-255)."""
    if index < 16:
        return index
    if index >= 232:
        grey = 8 + 10 * (index - 232)
        return nearest(grey, grey, grey)
    cube = index - 16
    return nearest(_CUBE[cube // 36], _CUBE[cube // 6 % 6], _CUBE[cube % 6])


def nearest(red: int, green: int, blue: int) -> int:
    """The one of xterm's 16 colours closest to ``(red, green, blue)``."""
    return min(range(16), key=lambda n: (_XTERM16[n][0] - red) ** 2
               + (_XTERM16[n][1] - green) ** 2 + (_XTERM16[n][2] - blue) ** 2)


def colour_name(index: int) -> str:
    """``red`` for 1, ``bright-red`` for 9."""
    return ("bright-" if index >= 8 else "") + NAMES[index % 8]


@cache
def classes_of(style: Style) -> str:
    """The span's classes for a style; "" for the plain one."""
    names = [name for name, on in (("ansi-bold", style.bold), ("ansi-dim", style.dim),
                                   ("ansi-italic", style.italic),
                                   ("ansi-underline", style.underline)) if on]
    if style.reverse:
        names.append("ansi-reverse")
        if style.fg is not None:
            names.append(f"ansi-reverse-{colour_name(style.fg)}")
    else:
        if style.fg is not None:
            names.append(f"ansi-{colour_name(style.fg)}")
        if style.bg is not None:
            names.append(f"ansi-bg-{colour_name(style.bg)}")
    return " ".join(names)
