"""LogQuery: the raw-line prefilter never drops a match (random texts full of escapes and case-folding traps)."""

import random

import orjson
import pytest

from buildlogs.api.search import LogQuery

# Characters that JSON escapes, that casefold to ASCII or to several characters, and plain ones.
ALPHABET = [
    *"aAbBkKsSiIfF x1",
    '"',
    "\\",
    "\x1b",
    "\t",
    "\n",
    "\x00",
    "\x7f",
    "/",
    *"ßſ\u212aﬁİıσςΣéÉ✓",
    "\u2028",
    "😀",
]


def ndjson(texts: list[str]) -> bytes:
    return b"".join(
        orjson.dumps({"id": f"{n}-0", "ts": n, "source": "stdout", "text": t, "phase": "build"}) + b"\n"
        for n, t in enumerate(texts)
    )


def found(query: LogQuery, block: bytes) -> list[str]:
    """The texts the prefilter lets through that the full test accepts (what search counts)."""
    records = (orjson.loads(line) for line in query.candidates(block))
    return [r["text"] for r in records if query.matches(r["text"])]


@pytest.mark.parametrize("seed", range(20))
def test_candidates_keep_every_matching_line(seed: int) -> None:
    # GIVEN random lines (some all-ASCII blocks, some mixed) and needles cut from them with their case flipped
    rng = random.Random(seed)
    ascii_only = seed % 2 == 0
    alphabet = [c for c in ALPHABET if c.isascii()] if ascii_only else ALPHABET
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(300)]
    block = ndjson(texts)
    needles = []
    for _ in range(40):
        text = rng.choice([t for t in texts if t])
        start = rng.randrange(len(text))
        piece = text[start : start + rng.randint(1, 4)]
        needles.append("".join(c.swapcase() if rng.random() < 0.5 else c for c in piece))
    needles += ["k", "ss", "fi", "s", "i", '"', "\\", "\x1b", "u001b", "\\u"]

    for needle in needles:
        query = LogQuery.parse(needle)
        # WHEN the block is prefiltered, THEN exactly the lines the full test accepts are found
        assert found(query, block) == [t for t in texts if query.matches(t)], repr(needle)


@pytest.mark.parametrize(
    ("needle", "text", "match"),
    [
        ("k", "\u212a", True),  # Kelvin sign
        ("ss", "ß", True),
        ("SS", "Straße", True),
        ("ß", "STRASSE", True),
        ("fi", "ﬁ", True),
        ("s", "ſ", True),  # long s
        ("σ", "ς", True),  # final sigma
        ("É", "été", True),
        ("u001b", "\x1b[0m", False),  # the JSON escape of ESC is not text
        ("\\u", "\x1b", False),
        ('\\"', 'a\\"b', True),
        ('\\"', 'a"b', False),
    ],
)
def test_plain_queries_are_casefolded_substrings_of_the_text(needle: str, text: str, match: bool) -> None:
    query = LogQuery.parse(needle)
    assert query.matches(text) is match
    assert found(query, ndjson([text])) == ([text] if match else [])


def test_regex_queries_are_case_insensitive_re2() -> None:
    query = LogQuery.parse(r"^error:\s+\w+$", regex=True)
    assert query.matches("ERROR:  EADDRINUSE")
    assert not query.matches("an error: x")
    assert found(query, ndjson(["Error: x", "error: y z"])) == ["Error: x"]
