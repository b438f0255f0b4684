"""Line shaping without Redis: LineSplitter, masker and fit_line called directly."""

import pytest

from buildlogs.stream.lines import MASK, LineSplitter, fit_line, masker, replace_lone_surrogates

CAP = 1 << 20


def split(*chunks: str | bytes, cap: int = CAP) -> list[str]:
    """Every line the splitter gives for ``chunks``, the trailing partial one included."""
    splitter = LineSplitter(cap)
    found = [text for chunk in chunks for text, _overflow in splitter.feed(chunk)]
    tail = splitter.drain()
    return found if tail is None else [*found, tail[0]]


# -- splitting ---------------------------------------------------------------------------------


def test_lines_are_split_across_chunk_boundaries() -> None:
    # GIVEN chunks that do not align with lines (as E2B delivers them)
    chunks = ("abc", "def\nghi\n", "jk", "l\n\nmno")
    # WHEN they are split and the tail drained
    found = split(*chunks)
    # THEN each line is whole, the empty line is kept, the partial tail comes last
    assert found == ["abcdef", "ghi", "jkl", "", "mno"]


def test_a_partial_line_waits_for_its_newline_until_drained() -> None:
    # GIVEN a chunk ending in a partial line
    splitter = LineSplitter(CAP)
    # WHEN it is fed
    complete = splitter.feed("done\nstill typ")
    # THEN only the complete line comes out, and the rest is held
    assert complete == [("done", 0)]
    assert splitter.size == len("still typ")
    # WHEN the splitter is drained (the streamer's flush in finally)
    # THEN the partial line comes out once, and nothing after it
    assert splitter.drain() == ("still typ", 0)
    assert splitter.drain() is None
    assert splitter.size == 0


def test_an_empty_chunk_gives_nothing() -> None:
    # GIVEN a fresh splitter WHEN empty chunks arrive THEN no line and no tail
    splitter = LineSplitter(CAP)
    assert splitter.feed("") == []
    assert splitter.feed(b"") == []
    assert splitter.drain() is None


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        (["a\r\nb\r\n"], ["a", "b"]),
        (["abc\r", "\ndef\n"], ["abc", "def"]),  # \r\n split across two chunks is one newline
        (["abc\r", "\n"], ["abc"]),  # abc\r then a newline keeps abc
        (["10%\r20%\r100%\n"], ["100%"]),  # progress bar: what the terminal shows last
        (["10%\r", "20%\r", "100%", "\n"], ["100%"]),
        (["abc\r\n"], ["abc"]),
        (["abc\r", "\r\n"], ["abc"]),  # an empty last segment does not erase the line
        (["old\rnew text\n"], ["new text"]),
        (["\rfresh\n"], ["fresh"]),
        (["abc\r"], ["abc"]),  # a trailing \r at the very end keeps the line
        (["abc\r", "x"], ["x"]),  # ... but the next chunk's text replaces it
    ],
)
def test_carriage_returns_keep_what_a_terminal_shows(chunks: list[str], expected: list[str]) -> None:
    # GIVEN output with carriage returns, WHEN it is split, THEN the lines are what a terminal shows
    assert split(*chunks) == expected


def test_a_carriage_return_also_resets_an_overflowing_line() -> None:
    # GIVEN a line that overflowed the cap, then a \r and a short segment
    splitter = LineSplitter(cap=4)
    # WHEN the line ends
    found = splitter.feed("0123456789\rok\n")
    # THEN the short segment replaces it, with no overflow left over
    assert found == [("ok", 0)]


def test_utf8_split_across_reads_is_not_mangled() -> None:
    # GIVEN bytes from a local process with a multi-byte character split across two reads
    data = "héllo ✓ wörld\n".encode()
    cut = data.index("✓".encode()) + 1
    # WHEN they are split THEN the character is intact
    assert split(data[:cut], data[cut:]) == ["héllo ✓ wörld"]


def test_invalid_utf8_becomes_replacement_characters() -> None:
    # GIVEN bytes with invalid sequences and an incomplete one at the very end
    # WHEN they are split and drained
    found = split(b"bad \xff\xfe byte\n", b"truncated \xe2\x9c")
    # THEN each bad sequence is U+FFFD
    assert found == ["bad \ufffd\ufffd byte", "truncated \ufffd"]


def test_an_endless_line_keeps_memory_bounded_and_counts_its_overflow() -> None:
    # GIVEN a splitter holding at most 1,024 characters of a line
    splitter = LineSplitter(cap=1024)
    # WHEN a process prints 2 MB without a newline, in 4 KiB chunks
    for _ in range(512):
        assert splitter.feed("z" * 4096) == []
        # THEN the pending line never grows past the cap
        assert splitter.size <= 1024
    # AND the line, once ended, keeps its head and counts the rest in bytes
    [(text, overflow)] = splitter.feed("\n")
    assert (text, overflow) == ("z" * 1024, 512 * 4096 - 1024)


def test_overflow_is_counted_in_utf8_bytes() -> None:
    # GIVEN a cap of 2 characters WHEN a line of 5 three-byte characters arrives
    [(text, overflow)] = LineSplitter(cap=2).feed("€€€€€\n")
    # THEN 2 characters are kept and the other 3 count 9 bytes
    assert (text, overflow) == ("€€", 9)


# -- masking -----------------------------------------------------------------------------------


def test_secrets_are_masked_even_when_printed_across_chunks() -> None:
    # GIVEN a secret printed across two chunks
    mask = masker(["s3cr3t-T0KEN", ""])
    # WHEN the chunks are split into a line and the line masked
    [line] = split("token=s3cr3t-", "T0KEN ok\n")
    # THEN the value is gone
    assert mask(line) == f"token={MASK} ok"


def test_each_line_of_a_multiline_secret_is_masked() -> None:
    # GIVEN a multi-line secret (a PEM key) printed as it is
    mask = masker(["-----BEGIN KEY-----\r\nAAAAsecretbody\n-----END KEY-----"])
    # WHEN its lines are masked one at a time (as the splitter delivers them)
    masked = [mask(line) for line in split("key:\n-----BEGIN KEY-----\nAAAAsecretbody\n")]
    # THEN each line of it is masked
    assert masked == ["key:", MASK, MASK]


def test_a_longer_secret_containing_another_is_masked_whole() -> None:
    # GIVEN two secrets, one inside the other
    mask = masker(["abc", "xxabcxx"])
    # WHEN a line holds the longer one THEN it is masked whole, not around the shorter one
    assert mask("v=xxabcxx, w=abc") == f"v={MASK}, w={MASK}"


def test_no_secrets_leaves_text_alone() -> None:
    # GIVEN no (or only empty) secrets WHEN a line is masked THEN it is the very same string
    text = "nothing to hide ***"
    assert masker([])(text) is text
    assert masker(["", ""])(text) is text


# -- cutting -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x" * 100, "x" * 64 + "…[+36 bytes]"),
        ("é" * 40, "é" * 32 + "…[+16 bytes]"),  # 80 bytes; byte 64 is a character boundary
        ("a" + "€" * 30, "a" + "€" * 21 + "…[+27 bytes]"),  # 91 bytes; byte 64 falls inside a €
        ("🙂" * 17, "🙂" * 16 + "…[+4 bytes]"),  # 68 bytes of 4-byte characters
    ],
)
def test_long_lines_are_cut_at_a_character_boundary_with_the_dropped_bytes(text: str, expected: str) -> None:
    # GIVEN a 64-byte limit WHEN a longer line is fitted THEN it is cut, never inside a character
    assert fit_line(text, 0, 64) == expected


def test_the_suffix_is_not_counted_in_the_limit() -> None:
    # GIVEN a line one byte over the limit
    # WHEN it is fitted
    fitted = fit_line("y" * 65, 0, 64)
    # THEN the kept text alone fills the limit and the suffix comes on top of it
    head, suffix = fitted.split("…")
    assert len(head.encode()) == 64
    assert suffix == "[+1 bytes]"
    assert len(fitted.encode()) > 64


@pytest.mark.parametrize("text", ["", "short", "z" * 16, "é" * 32, "y" * 64])
def test_a_line_within_the_limit_is_returned_as_it_is(text: str) -> None:
    # GIVEN a line of at most 64 bytes WHEN fitted with no overflow THEN it is the same string
    assert fit_line(text, 0, 64) is text


def test_overflow_from_the_splitter_is_added_to_the_count() -> None:
    # GIVEN a short head whose rest the splitter already dropped (an endless line)
    # WHEN it is fitted THEN the suffix counts the dropped bytes, even though the head fits
    assert fit_line("head", 1000, 64) == "head…[+1000 bytes]"
    assert fit_line("z" * 100, 50, 64) == "z" * 64 + "…[+86 bytes]"


def test_secrets_are_masked_before_the_line_is_cut() -> None:
    # GIVEN a secret straddling the cut position of a 64-byte limit
    mask = masker(["TOPSECRETVALUE"])
    line = "y" * 58 + "TOPSECRETVALUE" + "z" * 10
    # WHEN the line is masked, then fitted (the streamer's order)
    fitted = fit_line(mask(line), 0, 64)
    # THEN no prefix of the secret leaks and the suffix counts only the masked line's extra bytes
    assert "TOPSEC" not in fitted
    masked = "y" * 58 + MASK + "z" * 10  # 71 bytes
    assert fitted == masked[:64] + f"…[+{len(masked) - 64} bytes]"


def test_an_endless_line_is_cut_to_the_limit_with_its_whole_overflow() -> None:
    # GIVEN the streamer's cap (limit + 4 KiB) and 2 MB printed without a newline
    splitter = LineSplitter(cap=1024 + 4096)
    for _ in range(512):
        splitter.feed("z" * 4096)
    # WHEN the line ends and is fitted to 1,024 bytes
    [(text, overflow)] = splitter.feed("\n")
    # THEN it keeps 1,024 bytes and counts every other byte printed
    assert fit_line(text, overflow, 1024) == "z" * 1024 + f"…[+{512 * 4096 - 1024} bytes]"


def test_a_lone_surrogate_is_cut_and_counted_without_raising() -> None:
    # GIVEN a str chunk with a lone surrogate (a misbehaving decoder), longer than the limit
    # WHEN it is fitted THEN nothing raises and every byte past the kept head is counted
    head, _, suffix = fit_line("\ud800" * 30, 0, 64).partition("…")
    assert suffix == f"[+{90 - len(head) * 3} bytes]"  # 3 bytes each, as the splitter counts them


# -- lone surrogates ---------------------------------------------------------------------------


def test_lone_surrogates_become_replacement_characters() -> None:
    # GIVEN text with lone surrogates and valid non-BMP characters
    # WHEN they are replaced THEN only the surrogates change and the result encodes as UTF-8
    cleaned = replace_lone_surrogates("bad \ud800 and \udc00, fine 🙂")
    assert cleaned == "bad \ufffd and \ufffd, fine 🙂"
    cleaned.encode()  # would raise UnicodeEncodeError with a surrogate left
