"""Text from the record made safe to show: no forged lines, no reordered text, no formulas.

Notes are free text and views can be edited, so every field a report
prints goes through ``visible``: control characters, line and paragraph
separators and invisible format characters (the bidi embeddings, overrides,
isolates and marks among them) become visible escapes such as ``\\n`` or
``\\u202e``, and a backslash is doubled so an escape cannot be faked. A field
then always stays on its own line and reads in its stored order.
"""

from __future__ import annotations

import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp"})
"""Control, format (bidi and zero-width among them), line and paragraph separators."""

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A cell starting with one of these is run as a formula by common spreadsheets."""


def _escape(character: str) -> str:
    named = _NAMED.get(character)
    if named is not None:
        return named
    if unicodedata.category(character) in _INVISIBLE:
        code = ord(character)
        if code < 0x100:
            return f"\\x{code:02x}"
        return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
    return character


def visible(text: str) -> str:
    """The text on one line with every invisible or line-breaking character escaped."""
    if text.isprintable() and "\\" not in text:
        return text  # the common case, checked in C
    return "".join(_escape(character) for character in text)


def spreadsheet_cell(text: str) -> str:
    """A CSV cell that a spreadsheet shows as text: escaped, and never run as a formula."""
    shown = visible(text)
    if text.startswith(FORMULA_STARTS) or shown.startswith(FORMULA_STARTS):
        return "'" + shown
    return shown
