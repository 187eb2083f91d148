"""The one rule for text that leaves the toolkit: `escape(value, medium)`.

Strings the toolkit did not write itself (a file's name, a program's output, a phone's getprop values, an error
message quoting any of them, whatever a results store holds) are data. Wherever such a string is written out it
goes through this function for the medium it is written to, so it shows as the text it is and never acts:

    terminal  one line: control and format characters (newline, ESC, bidi overrides, ...) shown as \\n, \\x1b, \\u202e
    markdown  inline Markdown text: the terminal form, then every character that could start markup, a link, an
              image, HTML, an entity or a table cell escaped with a backslash (`_` only where it could emphasise)
    code      a complete Markdown code span (a fence longer than any run of backticks inside)
    html      text or an attribute value in HTML: the terminal form, then & < > " ' as entities
    csv       a spreadsheet cell: a value that would start a formula (= + - @) is prefixed with '

The report's Markdown is rendered with raw HTML off as well (bench/writers.py), so even a string that escaped
escaping would show as text. models/ sits at the top of the data flow, so every package uses this one function.
"""

from __future__ import annotations

import html as _html
import unicodedata

MEDIA = ("terminal", "markdown", "code", "html", "csv")


class Markdown(str):
    """Text that is Markdown already: written by the toolkit (a bold label, a table mark), or escaped by `escape`.
    The table writer (models.common.markdown_table) escapes every other cell."""

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_MD_SPECIAL = frozenset("\\`*[]<>&|~#!$")


def _visible(c: str) -> str:
    """One character as it may be shown: itself, or an escape when it is a control or format character."""
    if c in _NAMED:
        return _NAMED[c]
    if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs"):
        o = ord(c)
        return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"
    return c


def terminal(text: str) -> str:
    return "".join(c if c.isprintable() and c not in _NAMED else _visible(c) for c in text)


def _markdown(text: str) -> str:
    t = terminal(text)
    out = []
    for i, c in enumerate(t):
        if c in _MD_SPECIAL:
            out.append("\\" + c)
        elif c == "_" and not (0 < i < len(t) - 1 and t[i - 1].isalnum() and t[i + 1].isalnum()):
            out.append("\\_")  # an underscore inside a word cannot emphasise (CommonMark); elsewhere it can
        else:
            out.append(c)
    return "".join(out)


def _code(text: str) -> str:
    t = terminal(text)
    longest = run = 0
    for c in t:
        run = run + 1 if c == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if t[:1] in ("`", " ") or t[-1:] in ("`", " ") else ""
    return f"{fence}{pad}{t}{pad}{fence}"


def escape(value: object, medium: str) -> str:
    """`value` (any object: str() of it) made safe to write to `medium` (one of MEDIA)."""
    text = value if isinstance(value, str) else "" if value is None else str(value)
    if medium == "terminal":
        return terminal(text)
    if medium == "markdown":
        return Markdown(_markdown(text))
    if medium == "code":
        return Markdown(_code(text))
    if medium == "html":
        return _html.escape(terminal(text), quote=True)
    if medium == "csv":
        return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
    raise ValueError(f"unknown medium {medium!r}; valid: {', '.join(MEDIA)}")
