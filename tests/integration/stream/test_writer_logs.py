"""StreamWriter's own warnings go through the functions' structured logger, with the build's id."""

import logging
import socket

import pytest

from buildlogs.clients import create_redis
from buildlogs.observability import logger
from buildlogs.settings import Settings
from buildlogs.stream.writer import StreamWriter


async def test_a_dropped_batch_is_logged_by_the_structured_logger_with_the_build_id(
    build_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a writer whose Redis does not answer (a port nobody listens on)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    client = create_redis(Settings(redis_url=f"redis://127.0.0.1:{port}/0"))
    writer = StreamWriter(client, build_id, maxlen=1000)
    # WHEN a batch is written
    with caplog.at_level(logging.WARNING):
        try:
            await writer.write([{"ts": 1, "source": "stdout", "phase": "build", "text": "x"}], "build")
        finally:
            await client.aclose()
    # THEN the batch is dropped and the warning, with its message, comes from the Powertools logger
    # (the one the local run writes to its functions' log, structured, with the build's context)
    assert writer.lines_dropped == 1
    [record] = [r for r in caplog.records if "dropping lines" in r.getMessage()]
    assert record.name == logger.name
    assert record.getMessage().startswith(f"redis unavailable for {build_id}, dropping lines: ")
    assert record.build_id == build_id
