"""strip_ansi: every kind of terminal escape goes, the text around it stays."""

import pytest

from buildlogs.stream.ansi import strip_ansi


@pytest.mark.parametrize(
    ("raw", "plain"),
    [
        ("\x1b[31mred\x1b[0m", "red"),  # SGR, 16 colours
        ("\x1b[1;38;5;196mbold 256\x1b[m", "bold 256"),  # SGR, 256 colours, bold, bare reset
        ("\x1b[38;2;255;128;0mtruecolor\x1b[39m", "truecolor"),  # SGR, 24-bit
        ("\x1b[2K\x1b[1A\x1b[?25lprogress\x1b[?25h", "progress"),  # other CSI: erase, cursor, private modes
        ("\x9b31mC1 CSI\x9b0m", "C1 CSI"),  # the 8-bit CSI
        ("\x1b]0;window title\x07after", "after"),  # OSC ended by BEL
        ("\x1b]8;;https://example.com\x1b\\link\x1b]8;;\x1b\\", "link"),  # OSC 8 hyperlink ended by ST
        ("\x1bPq#0;2;0;0;0\x1b\\sixel gone", "sixel gone"),  # DCS string
        ("\x1b_APC payload\x1b\\x", "x"),  # APC string
        ("a\x1b(Bb\x1b7c\x1b8d\x1b=e\x1bMf", "abcdef"),  # charset, save/restore cursor, keypad, reverse index
        ("trailing lone escape \x1b", "trailing lone escape "),
        ("unterminated \x1b[31", "unterminated "),
    ],
)
def test_escape_sequences_are_removed(raw: str, plain: str) -> None:
    # GIVEN a line with escapes WHEN stripped THEN only its text is left
    assert strip_ansi(raw) == plain


def test_text_without_escapes_is_unchanged_and_the_same_object() -> None:
    text = "plain [31m text with brackets ] and unicode é ✓ <img src=x>"
    assert strip_ansi(text) is text


def test_an_unterminated_string_ends_at_the_line_end() -> None:
    # GIVEN two lines joined by a newline, the first with an OSC never terminated
    # WHEN the joined page is stripped THEN the second line survives: stripping a page equals stripping each line
    lines = ["title \x1b]0;never ended", "\x1b[32mnext line\x1b[0m"]
    assert strip_ansi("\n".join(lines)) == "\n".join(strip_ansi(line) for line in lines) == "title \nnext line"


def test_text_next_to_sequences_is_kept_exactly() -> None:
    assert strip_ansi("5\x1b[0m0% [\x1b[32m==>\x1b[0m]") == "50% [==>]"
