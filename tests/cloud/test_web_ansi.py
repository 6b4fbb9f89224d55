"""Terminal colours on the task page (``web/ansi.py``): SGR escapes become classed spans, and
nothing else changes. The text is the ``text`` filter's to the character (a property test
against ``pages._text``), every other escape is removed, hostile text stays text, the markup is
flat and balanced and grows linearly with its input, every class it can emit is in app.css,
and each theme's colours keep WCAG AA contrast (4.5:1) against the code background and every
ANSI background, measured from app.css itself."""

from __future__ import annotations

import html
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from cloud_kit import Account, Mailbox
from fastapi.testclient import TestClient
from hypothesis import example, given, settings
from hypothesis import strategies as st
from web_kit import browser_of, sign_in

from claude_notify.cloud.server.web import ansi, pages
from claude_notify.cloud.server.web.ansi import NAMES, Style, classes_of, to_html
from claude_notify.events import TaskEvent

CSS = Path(ansi.__file__).parent / "static" / "app.css"
TAG = re.compile(r'<span class="([a-z0-9 -]+)">|</span>')


def _spans(markup: str) -> list[tuple[str, str]]:
    """``(classes, text)`` for each run of text, asserting the tags are flat and balanced."""
    runs: list[tuple[str, str]] = []
    opened: str | None = None
    at = 0
    for tag in TAG.finditer(markup):
        if tag.start() > at:
            runs.append((opened or "", markup[at:tag.start()]))
        if tag.group(1) is None:
            assert opened is not None, markup  # a close without an open
            opened = None
        else:
            assert opened is None, markup  # never nested
            opened = tag.group(1)
        at = tag.end()
    assert opened is None, markup  # every span closed
    if at < len(markup):
        runs.append(("", markup[at:]))
    return runs


def _text_of(markup: str) -> str:
    bare = TAG.sub("", markup)
    assert "<" not in bare and ">" not in bare, bare  # no markup but ours
    return html.unescape(bare)


def _runs(raw: str) -> list[tuple[str, str]]:
    return [(c, html.unescape(t)) for c, t in _spans(to_html(raw))]


# -- colours and styles ---------------------------------------------------------------------


@pytest.mark.parametrize(("codes", "classes"), [
    ("31", "ansi-red"), ("32", "ansi-green"), ("37", "ansi-white"), ("30", "ansi-black"),
    ("91", "ansi-bright-red"), ("97", "ansi-bright-white"), ("90", "ansi-bright-black"),
    ("41", "ansi-bg-red"), ("107", "ansi-bg-bright-white"), ("1", "ansi-bold"),
    ("2", "ansi-dim"), ("3", "ansi-italic"), ("4", "ansi-underline"), ("4:3", "ansi-underline"),
    ("1;4;33;44", "ansi-bold ansi-underline ansi-yellow ansi-bg-blue"),
    ("38;5;1", "ansi-red"), ("38;5;9", "ansi-bright-red"), ("38;5;196", "ansi-bright-red"),
    ("38;5;21", "ansi-blue"), ("38;5;105", "ansi-bright-blue"), ("38;5;232", "ansi-black"),
    ("38;5;255", "ansi-white"),
    ("48;5;2", "ansi-bg-green"), ("38:5:3", "ansi-yellow"),
    ("38;2;250;10;10", "ansi-bright-red"), ("38;2;180;0;0", "ansi-red"),
    ("48;2;0;0;230", "ansi-bg-blue"), ("38:2::0:250:250", "ansi-bright-cyan"),
    ("38:2:0:200:0", "ansi-green"),
    ("7", "ansi-reverse"), ("31;7", "ansi-reverse ansi-reverse-red"),
    ("7;44", "ansi-reverse"),  # reverse draws no background colour (the simple kind)
    ("", ""), ("0", ""), ("31;0", ""), ("31;39", ""), ("41;49", ""), ("1;22", ""), ("2;22", ""),
    ("3;23", ""), ("4;24", ""), ("7;27", ""), ("31;7;27", "ansi-red"),
    ("38;5;300", ""), ("38;2;256;0;0", ""), ("38;5", ""), ("38;2;1;2", ""), ("38;9;1", ""),
    ("58;5;31", ""), ("58;2;0;31;0", ""),  # underline colours are read past, not misread
    ("5", ""), ("8", ""), ("53", ""), ("99999999999;31", "ansi-red"), ("9" * 5000, ""),
    ("031", "ansi-red"),
])
def test_sgr_codes_become_classes(codes: str, classes: str) -> None:
    expected = [("", "a"), (classes, "B"), ("", "c")] if classes else [("", "aBc")]
    assert _runs(f"a\x1b[{codes}mB\x1b[0mc") == expected


def test_styles_add_up_until_reset_and_each_change_is_one_flat_span() -> None:
    raw = "\x1b[1mbold \x1b[31mred \x1b[42mon green\x1b[39m default\x1b[22m thin\x1b[0m plain"
    assert to_html(raw) == (
        '<span class="ansi-bold">bold </span><span class="ansi-bold ansi-red">red </span>'
        '<span class="ansi-bold ansi-red ansi-bg-green">on green</span>'
        '<span class="ansi-bold ansi-bg-green"> default</span>'
        '<span class="ansi-bg-green"> thin</span> plain')
    # codes with no text between them open nothing, and a code that changes nothing adds none
    assert to_html("\x1b[31m\x1b[32m\x1b[0m\x1b[33mx\x1b[33my\x1b[0m") == (
        '<span class="ansi-yellow">xy</span>')


def test_the_style_carries_over_lines_and_over_a_redrawn_line() -> None:
    # a newline paints nothing: it stays in the open span rather than close it early
    assert _runs("\x1b[32mone\ntwo\x1b[0m\n3") == [("ansi-green", "one\ntwo\n"), ("", "3")]
    # a progress bar: only the last state of the line shows, in the colour set before it
    assert _runs("\x1b[36m 10%\r 50%\r\x1b[1m100%\x1b[0m done\n") == [
        ("ansi-bold ansi-cyan", "100%"), ("", " done\n")]
    assert _runs("a\x1b[31m\r\x1b[0m\nb") == [("", "\nb")]  # \r then \n once the codes are gone


def test_nearest_colours() -> None:
    assert [ansi.nearest_of_256(n) for n in range(16)] == list(range(16))
    assert ansi.nearest(0, 0, 0) == 0 and ansi.nearest(255, 255, 255) == 15
    assert ansi.nearest(100, 100, 100) == 8 and ansi.nearest(200, 200, 200) == 7
    assert ansi.nearest_of_256(226) == 11  # ff ff 00
    assert ansi.nearest_of_256(244) == 8  # grey 128


# -- hostile text -----------------------------------------------------------------------------


def test_markup_inside_coloured_text_is_text() -> None:
    out = to_html("\x1b[31m<script>alert(1)</script>\x1b[0m\"'&")
    assert out == ('<span class="ansi-red">&lt;script&gt;alert(1)&lt;/script&gt;</span>'
                   "&#34;&#39;&amp;")


@pytest.mark.parametrize(("raw", "shown"), [
    ("\x1b]8;;javascript:alert(1)\x07click\x1b]8;;\x07", "click"),  # OSC 8 hyperlink, BEL
    ("\x1b]8;;javascript:alert(1)\x1b\\click\x1b]8;;\x1b\\", "click"),  # … and ST
    ("\x1b]52;c;ZWNobyBoYWNrZWQ=\x07after", "after"),  # OSC 52: write the clipboard
    ("\x1b]0;fake title\x07x", "x"), ("\x1bP+q544e\x1b\\x", "x"),  # title, DCS
    ("a\x1b[2J\x1b[H\x1b[10;20Hb\x1b[?25l\x1b[>4;2mc", "abc"),  # cursor, modes: not SGR
    ("\x1b[31", "[31"), ("x\x1b[", "x["), ("\x1b", ""), ("a\x1bb", "ab"),  # unterminated, stray
    ("\x1b]8;;javascript:alert(1)", ""),  # an OSC never ended eats the rest, as clean_output does
    ("a\x00b\x07c\x7fd\x9b31me\x85f", "abcdef"),  # C0, DEL, C1 (8-bit CSI)
    ("tab\there", "tab\there"),
    ("\u202eevil\u2066x\ufeff", "\ufffdevil\ufffdx\ufffd"),  # bidi overrides, BOM: format
    ("\ue000", "\ufffd"),  # private use
])
def test_other_escapes_and_controls_are_removed(raw: str, shown: str) -> None:
    out = to_html("\x1b[32m" + raw)
    assert _text_of(out) == shown == pages._text(raw)
    assert "javascript" not in out and "\x1b" not in out and "href" not in out
    assert set(re.findall(r'class="([^"]*)"', out)) <= {"ansi-green"}


def test_a_lone_surrogate_is_a_replacement_character() -> None:
    assert to_html("\x1b[31ma\ud800b") == '<span class="ansi-red">a\ufffdb</span>'


def test_values_are_text_and_empty_is_empty() -> None:
    assert to_html(None) == "" and to_html("") == "" and to_html(42) == "42"
    assert to_html("\x1b[31m\x1b[0m") == ""


# -- the same text as the text filter ---------------------------------------------------------

_FRAGMENTS = ["\x1b[0m", "\x1b[1;31m", "\x1b[38;5;208m", "\x1b[48;2;1;2;3m", "\x1b[7m",
              "\x1b[", "\x1b]8;;http://x\x07", "\x1b]0;t\x1b\\", "\x1b", "\x9b2J", "\r", "\n",
              "\r\n", "\u202e", "\x00", "<b>", "&amp;", "\x85", "\x1bP", "\x1b[?1h"]
_SGR = st.lists(st.one_of(st.integers(0, 260).map(str), st.just(""), st.just("5"), st.just("2")),
                max_size=7).map(lambda ps: "\x1b[" + ";".join(ps) + "m")
_SOUP = st.text(alphabet=st.sampled_from(list("\x1b\x9b[]P\\();:m0123458\x07\r\n a<&\u202e")),
                max_size=60)
_STREAMS = st.lists(st.one_of(st.text(max_size=10), st.sampled_from(_FRAGMENTS), _SGR, _SOUP),
                    max_size=25).map("".join)


@settings(max_examples=200, deadline=None)
@given(_STREAMS)
@example("\x1b[31mred\x1b[0m \x1b]8;;javascript:x\x07l\x1b]8;;\x07 50%\r100%\n")
def test_the_text_is_the_text_filters_once_the_spans_are_gone(raw: str) -> None:
    out = to_html(raw)
    _spans(out)  # flat and balanced
    assert _text_of(out) == pages._text(raw)
    assert not re.search(r'<span class="[^"]*"></span>|<span class="">', out)  # no empty spans


# -- hostile volumes --------------------------------------------------------------------------


def test_a_hundred_thousand_codes_make_bounded_flat_markup() -> None:
    piled = "\x1b[1m\x1b[31m\x1b[4m\x1b[38;5;200m" * 100_000 + "x"
    out = to_html(piled)
    assert out == '<span class="ansi-bold ansi-underline ansi-bright-magenta">x</span>'

    switching = "".join(f"\x1b[{30 + n % 8}mx" for n in range(100_000)) + "\x1b[0m"
    out = to_html(switching)
    runs = _spans(out)  # flat, balanced
    assert len(runs) == 100_000 and out.count("<span") == out.count("</span>") == 100_000
    longest = max(len(f'<span class="ansi-{c}">x</span>') for c in NAMES)
    assert len(out) <= 100_000 * longest  # one short span per change, nothing accumulates


@pytest.mark.parametrize("shape", [
    "\x1b[31mA\x1b[32mB", "x\r", "ab\x1b[1m\rcd\n", "\x1b]", "\x1b[" + "1;" * 50, "\x1b[0",
    "<&>\u202e\x00é", "\x1b[38;2;1;2;3m\x1b]8;;u\x07",
])
def test_megabytes_go_through_in_linear_time(shape: str) -> None:
    """Output size is linear in the input, and the time is far from quadratic: a quadratic pass
    over 2 MB would take hours; the bound is generous for a shared machine."""
    raw = shape * (2_000_000 // len(shape))
    started = time.perf_counter()
    out = to_html(raw)
    took = time.perf_counter() - started
    assert len(out) <= 40 * len(raw)
    assert took < 30, took
    half = to_html(raw[: len(raw) // 2])
    assert len(out) <= 2 * len(half) + 100  # twice the input: at most twice the output


# -- the stylesheet ---------------------------------------------------------------------------


def _rules(css: str) -> dict[str, dict[str, str]]:
    """Each plain rule's selector and declarations (rules inside @media blocks included)."""
    rules: dict[str, dict[str, str]] = {}
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    for selector, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        declared = dict(tuple(p.strip() for p in d.split(":", 1)) for d in body.split(";")
                        if ":" in d)
        rules.setdefault(selector.strip().split("\n")[-1].strip(), {}).update(declared)
    return rules


def _themes() -> dict[str, dict[str, str]]:
    """The custom properties of the light theme and of the dark one (light, then overrides)."""
    css = re.sub(r"/\*.*?\*/", "", CSS.read_text(), flags=re.S)
    dark_blocks: list[str] = []
    rest = css
    while (start := rest.find("@media (prefers-color-scheme: dark)")) >= 0:
        open_at = rest.index("{", start)
        depth, at = 1, open_at + 1
        while depth:
            depth += {"{": 1, "}": -1}.get(rest[at], 0)
            at += 1
        dark_blocks.append(rest[open_at + 1:at - 1])
        rest = rest[:start] + rest[at:]

    def props(text: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for body in re.findall(r":root\s*\{([^{}]*)\}", text):
            found.update(re.findall(r"(--[\w-]+)\s*:\s*([^;]+?)\s*(?:;|$)", body))
        return found

    light = props(rest)
    dark = {**light, **props("".join(dark_blocks))}
    assert len(dark_blocks) >= 2 and dark["--code"] != light["--code"]
    return {"light": light, "dark": dark}


def _luminance(colour: str) -> float:
    assert re.fullmatch(r"#[0-9a-f]{6}", colour), colour

    def channel(hex2: str) -> float:
        c = int(hex2, 16) / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(colour[i:i + 2]) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _resolve(value: str, theme: dict[str, str]) -> str:
    found = re.fullmatch(r"var\((--[\w-]+)\)", value)
    return theme[found.group(1)] if found else value


def _every_class() -> set[str]:
    styles = [Style(fg=n) for n in range(16)] + [Style(bg=n) for n in range(16)]
    styles += [Style(reverse=True, fg=n) for n in range(16)]
    styles += [Style(bold=True, dim=True, italic=True, underline=True, reverse=True)]
    return {name for s in styles for name in classes_of(s).split()}


def test_every_class_the_converter_emits_is_styled_in_app_css() -> None:
    rules = _rules(CSS.read_text())
    emitted = _every_class()
    assert len(emitted) == 5 + 16 * 3
    assert {f".{name}" for name in emitted} <= set(rules)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_ansi_colour_keeps_aa_contrast_on_every_background(theme: str) -> None:
    """WCAG AA for text: every foreground (each colour class, dim, and the page's own text)
    against the ``pre.out`` background and every ANSI background class; reverse video against
    its own background."""
    props = _themes()[theme]
    rules = {s: d for s, d in _rules(CSS.read_text()).items() if s.startswith(".ansi-")}
    code = props["--code"]
    inks = {s: _resolve(d["color"], props) for s, d in rules.items()
            if "color" in d and "background" not in d}
    grounds = {s: _resolve(d["background"], props) for s, d in rules.items()
               if "background" in d and "color" not in d and s.startswith(".ansi-bg-")}
    assert len(inks) == 17 and len(grounds) == 16  # 16 colours and dim; 16 backgrounds
    inks["the text"] = props["--fg"]
    grounds["pre.out"] = code
    low = [(ink, ground, round(_contrast(i, g), 2)) for ink, i in inks.items()
           for ground, g in grounds.items() if _contrast(i, g) < 4.5]
    assert low == []

    reverse = rules[".ansi-reverse"]
    reverse_ink = _resolve(reverse["color"], props)
    assert reverse_ink == code
    behind = [_resolve(reverse["background"], props)] + [
        _resolve(d["background"], props) for s, d in rules.items()
        if s.startswith(".ansi-reverse-")]
    assert len(behind) == 17
    assert min(_contrast(reverse_ink, b) for b in behind) >= 4.5
    # the 16 colours are told apart: no two the same in a theme
    assert len({inks[f".ansi-{c}"] for c in NAMES} | {inks[f".ansi-bright-{c}"]
                                                      for c in NAMES}) >= 15


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_pages_own_colours_keep_aa_contrast(theme: str) -> None:
    """WCAG AA for the page itself: every text colour on the page and code backgrounds, and
    the buttons' text on their fill."""
    props = _themes()[theme]
    inks = ("--fg", "--muted", "--accent", "--ok", "--bad", "--warn")
    pairs = [(ink, ground) for ink in inks for ground in ("--bg", "--code")]
    pairs += [("--bg", "--accent"), ("--bg", "--bad")]  # button text on its fill
    low = [(a, b, round(_contrast(props[a], props[b]), 2)) for a, b in pairs
           if _contrast(props[a], props[b]) < 4.5]
    assert low == []


# -- through the app --------------------------------------------------------------------------


def test_the_task_page_shows_colours_as_classes_and_markup_as_text(
    client: TestClient, smtp_server: Mailbox, make_user: Callable[..., Account]
) -> None:
    user = make_user()
    key = uuid.uuid4().hex
    event = TaskEvent.from_dict({"type": "finished", "source": "run", "task_id": key,
                                 "machine_id": "m-1", "status": "failure", "exit_code": 2,
                                 "command": "make test",
                                 "tail": "\x1b[31mred\x1b[0m <b>x</b>\n"}).to_dict()
    assert client.post("/v1/events", json=event, headers=user.headers).status_code == 202
    log = b"\x1b[1;32mok\x1b[0m \x1b]8;;javascript:alert(1)\x07<i>y</i>\x1b]8;;\x07\n"
    sent = client.post(f"/v1/tasks/{quote(key, safe='')}/log", content=log,
                       headers={**user.headers, "content-type": "application/octet-stream"})
    assert sent.status_code == 200, sent.text
    b = browser_of(client)
    sign_in(b, smtp_server, user.email)

    page = b.get(f"/app/t/{quote(key, safe='')}")
    assert page.status_code == 200
    assert '<pre class="out"><span class="ansi-red">red</span> &lt;b&gt;x&lt;/b&gt;\n</pre>' \
        in page.text
    assert ('<pre class="out"><span class="ansi-bold ansi-green">ok</span> '
            "&lt;i&gt;y&lt;/i&gt;\n</pre>") in page.text
    assert "style=" not in page.text and "<b>" not in page.text
    assert "javascript" not in page.text and "\x1b" not in page.text
    styled = set(_rules(b.get("/app/static/app.css").text))
    used = {c for classes in re.findall(r'<span class="([^"]+)"', page.text)
            for c in classes.split() if c.startswith("ansi-")}
    assert used == {"ansi-red", "ansi-bold", "ansi-green"}
    assert {f".{c}" for c in used} <= styled
