"""What one API response may carry, defined once: Lambda's synchronous payload limit and the budgets under it.

A Lambda behind API Gateway returns its response as one JSON document (the proxy envelope, whose
``body`` is a JSON string). Its limit is 6 MB; a response over it is a 502 at the gateway. The
routes that return log entries (``/logs``, ``/logs/search``, ``/events``) stop a page at
``PAGE_BUDGET_BYTES`` of entries as :func:`response_bytes` weighs them, ``logs.txt`` inlines at
most ``INLINE_TEXT_BYTES``; what is left covers the envelope, the headers and a page's cursors.
"""

import json
from collections.abc import Mapping
from typing import Any

import orjson

# Lambda's synchronous invocation payload limit, for the request and the response alike.
LAMBDA_PAYLOAD_BYTES = 6 * 1024 * 1024
# logs.txt: the most a text body may weigh once JSON-escaped in the response; larger is a 302/413.
INLINE_TEXT_BYTES = 5 * 1024 * 1024
# A page of log entries: its entries' response_bytes stay within this (the first entry always fits).
PAGE_BUDGET_BYTES = 4 * 1024 * 1024
# Per entry, for what surrounds it: a comma in a JSON page; an SSE event's id:, event: and data:
# lines, blank line and ``"event":null`` (each newline escaped once more in the envelope).
ENTRY_FRAMING_BYTES = 128


def response_bytes(record: Mapping[str, Any]) -> int:
    """At least what ``record`` (an entry's fields) weighs in a Lambda response.

    The resolver writes JSON as ASCII (``json.dumps``: non-ASCII as ``\\uXXXX``), the envelope
    escapes that again as a string (each ``"`` and ``\\`` one byte more); plus
    ``ENTRY_FRAMING_BYTES``. A 16 KiB line of quotes weighs ~64 KiB, one of ``é`` ~57 KiB.
    """
    data = orjson.dumps(record)
    if not data.isascii():
        data = json.dumps(record, separators=(",", ":")).encode()
    return len(data) + data.count(b'"') + data.count(b"\\") + ENTRY_FRAMING_BYTES


class PageBudget:
    """Bytes taken by a page's entries so far: :meth:`take` says whether one more fits.

    The first entry always fits (a page is never empty because of the budget).
    """

    __slots__ = ("_limit", "used")

    def __init__(self, limit: int | None = None) -> None:
        self._limit = PAGE_BUDGET_BYTES if limit is None else limit
        self.used = 0

    def take(self, record: Mapping[str, Any]) -> bool:
        """Count ``record`` in and return ``True`` if it fits (or is the first), else ``False`` (not counted)."""
        size = response_bytes(record)
        if self.used and self.used + size > self._limit:
            return False
        self.used += size
        return True


__all__ = [
    "ENTRY_FRAMING_BYTES",
    "INLINE_TEXT_BYTES",
    "LAMBDA_PAYLOAD_BYTES",
    "PAGE_BUDGET_BYTES",
    "PageBudget",
    "response_bytes",
]
