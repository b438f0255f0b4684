"""Line shaping for the log stream: chunks into lines, secrets masked, long lines cut. No I/O.

Everything the stream contract says about a line's text lives here (DESIGN.md, "Log stream
contract" and "LogStreamer"), apart from Redis, so it can be tested by calling it. The streamer
calls :func:`masker`'s function and :func:`fit_line` once per line on its hot path: both return
the line untouched, without encoding it, in the common case.
"""

import codecs
import re
from collections.abc import Callable, Iterable

MASK = "***"
_SURROGATE = re.compile("[\ud800-\udfff]")


class LineSplitter:
    """Turns one source's chunks into complete lines, keeping what a terminal would show.

    ``\\r\\n`` is a newline even when split across chunks (``\\r`` is kept until the next chunk);
    a bare ``\\r`` lets the next non-empty segment replace the line; a line longer than
    ``cap`` characters keeps its head and counts the rest as overflow bytes, so memory stays
    bounded whatever a process prints without a newline.
    """

    __slots__ = ("_cap", "_decoder", "_overflow", "_parts", "_pending_cr", "_size")

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._parts: list[str] = []
        self._size = 0
        self._overflow = 0
        self._pending_cr = False

    def feed(self, chunk: str | bytes) -> list[tuple[str, int]]:
        """Complete lines in ``chunk`` as ``(text, overflow_bytes)``; the rest waits for more.

        ``bytes`` (a local process) go through an incremental decoder, so a character split
        across two reads survives; ``str`` (E2B) is taken as it is.
        """
        text = self._decoder.decode(chunk) if isinstance(chunk, bytes) else chunk
        lines: list[tuple[str, int]] = []
        if not text:
            return lines
        pieces = text.split("\n")
        for piece in pieces[:-1]:
            self._append(piece)
            lines.append(self._take())
        self._append(pieces[-1])
        return lines

    @property
    def size(self) -> int:
        """Characters held for the pending partial line (at most ``cap``)."""
        return self._size

    def drain(self) -> tuple[str, int] | None:
        """The trailing partial line (with any incomplete UTF-8 sequence as U+FFFD), if any."""
        self._append(self._decoder.decode(b"", final=True))
        if not self._parts and not self._overflow:
            return None
        return self._take()

    def _append(self, text: str) -> None:
        if not text:
            return
        if "\r" not in text and not self._pending_cr:
            self._add(text)
            return
        for index, segment in enumerate(text.split("\r")):
            if index:
                self._pending_cr = True
            if segment:
                if self._pending_cr:
                    self._parts.clear()
                    self._size = 0
                    self._overflow = 0
                    self._pending_cr = False
                self._add(segment)

    def _add(self, text: str) -> None:
        room = self._cap - self._size
        if len(text) <= room:
            self._parts.append(text)
            self._size += len(text)
            return
        if room > 0:
            self._parts.append(text[:room])
            self._size += room
        self._overflow += len(text[max(room, 0) :].encode("utf-8", "surrogatepass"))

    def _take(self) -> tuple[str, int]:
        line = "".join(self._parts) if len(self._parts) != 1 else self._parts[0]
        overflow = self._overflow
        self._parts.clear()
        self._size = 0
        self._overflow = 0
        self._pending_cr = False
        return line, overflow


def masker(secrets: Iterable[str]) -> Callable[[str], str]:
    """A function replacing every secret value (and each line of a multi-line one) by ``***``.

    Each line of a multi-line secret is a value too: the splitter delivers lines, so a PEM key
    printed as it is arrives one line at a time. Longer values are tried first, so a secret
    containing another is masked whole. No secrets: the identity, no regex per line.
    """
    values: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        values.add(secret)
        values.update(part for part in secret.replace("\r", "\n").split("\n") if part)
    if not values:
        return _identity
    pattern = re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))

    def mask(text: str) -> str:
        return pattern.sub(MASK, text) if text else text

    return mask


def _identity(text: str) -> str:
    return text


def fit_line(text: str, overflow: int, max_line_bytes: int) -> str:
    """``text`` cut to ``max_line_bytes`` of UTF-8 with a visible ``…[+N bytes]`` suffix.

    Call it on the masked line, so the cut never leaves a secret's prefix behind. ``overflow``
    counts bytes the splitter already dropped from an endless line. The cut never splits a
    character, and the suffix is not counted in the limit (readers see how much is missing).
    A line of at most ``max_line_bytes / 4`` characters fits whatever it holds: no encoding.
    """
    if len(text) * 4 <= max_line_bytes and not overflow:
        return text
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= max_line_bytes and not overflow:
        return text
    head = data[:max_line_bytes].decode("utf-8", "ignore")
    dropped = len(data) - len(head.encode("utf-8", "surrogatepass")) + overflow
    return f"{head}…[+{dropped} bytes]"


def replace_lone_surrogates(text: str) -> str:
    """``text`` with each lone surrogate (a misbehaving decoder's ``str``) as U+FFFD.

    Redis wants UTF-8 and a lone surrogate cannot be encoded: without this, one bad character
    would cost its whole batch. Rare, so the writer calls it only after an encoding error.
    """
    return _SURROGATE.sub("\ufffd", text)
