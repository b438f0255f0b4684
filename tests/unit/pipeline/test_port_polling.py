"""Waiting for a dev server's port polls fast first, then backs off (an iteration's Start is mostly this wait)."""

import itertools
import time

from buildlogs.pipeline.sandbox.protocol import PORT_POLL_MAX_S, port_poll_delays, wait_for_port


class OpensAfter:
    """A port probe that answers ``open`` from its ``n``-th call on."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    async def port_open(self, port: int) -> bool:
        self.calls += 1
        return self.calls >= self.n


async def test_a_port_opening_within_milliseconds_is_seen_within_milliseconds() -> None:
    # GIVEN a server whose port opens on the third probe
    probe = OpensAfter(3)
    started = time.monotonic()
    # WHEN Start waits for it
    await wait_for_port(probe, 8080, timeout=10)
    # THEN the wait took two short pauses (5 + 10 ms), not two fixed 200 ms polls
    assert probe.calls == 3
    assert time.monotonic() - started < 0.15


def test_the_pauses_double_from_5_ms_up_to_200_ms() -> None:
    delays = port_poll_delays()
    first = [next(delays) for _ in range(8)]
    assert first[:3] == [0.005, 0.01, 0.02]
    assert first[-1] == PORT_POLL_MAX_S
    assert all(a <= b for a, b in itertools.pairwise(first))
