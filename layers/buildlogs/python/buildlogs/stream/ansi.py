"""Removing terminal escape sequences from log text (``logs.txt?ansi=strip``, ``build.txt``).

Log entries keep the escapes the tools printed (colours, hyperlinks, cursor moves): the viewer
renders SGR colours itself, but a plain-text download must read as text. Removed here, per
ECMA-48: CSI sequences (``ESC [`` or 8-bit ``0x9B``; SGR colours are CSI ``m``), OSC strings
(``ESC ]`` … BEL or ST: titles, hyperlinks), DCS/SOS/PM/APC strings (``ESC P``/``X``/``^``/``_`` …
ST), and every other ``ESC`` sequence (intermediates then a final byte: ``ESC ( B``, ``ESC 7``).
A sequence never spans a newline (an unterminated string ends at the line's end), so stripping a
page of lines joined by ``\\n`` equals stripping each line.
"""

import re

_ANSI = re.compile(
    r"""
    (?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?     # CSI: parameters, intermediates, final
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])               # OSC, DCS, SOS, PM, APC (7- or 8-bit) ...
      [^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?               # ... up to BEL or ST (or the line's end)
    | \x1b[\x20-\x2f]*[\x30-\x7e]?                          # any other escape (or a lone ESC)
    """,
    re.VERBOSE,
)
_STARTS = ("\x1b", "\x9b", "\x90", "\x98", "\x9d", "\x9e", "\x9f")


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences; text without any escape is returned as is."""
    if not any(start in text for start in _STARTS):
        return text
    return _ANSI.sub("", text)


__all__ = ["strip_ansi"]
