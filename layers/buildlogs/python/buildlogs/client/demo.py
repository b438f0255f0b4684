"""`make run` until the local build exists: a real process streamed live through Redis.

A writer runs ``examples/noisy_build.py`` in a local sandbox (a real subprocess) and feeds its
stdout/stderr chunks to a LogStreamer; a LogReader long-polls the same stream and prints each entry as it
arrives, coloured by source and phase. No REDIS_URL: an embedded fakeredis.
"""

import asyncio
import shlex
import sys
import uuid
from pathlib import Path

from buildlogs.client import embedded
from buildlogs.client.console import format_entry, use_colour
from buildlogs.clients import create_redis
from buildlogs.pipeline.sandbox import LocalSandboxRuntime
from buildlogs.settings import get_settings
from buildlogs.stream.reader import LogReader
from buildlogs.stream.streamer import LogStreamer

EXAMPLE = Path(__file__).resolve().parents[5] / "examples" / "noisy_build.py"


async def run_example(streamer: LogStreamer, script: Path = EXAMPLE) -> int:
    """Run ``script`` as one stage in a local sandbox, streaming its output; then end the log."""
    sandbox = LocalSandboxRuntime()
    try:
        await sandbox.start()
        await streamer.stage("build")
        result = await sandbox.run_command(
            f"{shlex.quote(sys.executable)} -u {shlex.quote(str(script))}",
            timeout=60,
            on_stdout=streamer.on_stdout,
            on_stderr=streamer.on_stderr,
        )
        exit_code = result["exit_code"]
        await streamer.flush()
        if exit_code:
            await streamer.write_event(f"BUILD FAILED: command exited with code {exit_code}", event="build_failed")
        await streamer.end_stage(exit_code=exit_code)
    finally:
        await streamer.close()  # the last lines survive any failure
        await sandbox.kill()
    status = "SUCCEEDED" if exit_code == 0 else "FAILED"
    await streamer.write_event(f"BUILD {status}", event="end", status=status)
    return exit_code


async def tail(reader: LogReader, build_id: str, colour: bool) -> int:
    """Print entries live until the ``end`` entry; returns how many were printed."""
    cursor, printed = "0-0", 0
    while True:
        page = await reader.read(build_id, after=cursor, wait_ms=1000)
        for entry in page.entries:
            print(format_entry(entry, colour), flush=True)
        printed += len(page.entries)
        cursor = page.next
        if page.done:
            return printed


async def main() -> int:
    settings = get_settings()
    embedded.install()
    redis = create_redis(settings)
    build_id = f"demo-{uuid.uuid4().hex[:8]}"
    where = settings.redis_url or "embedded fakeredis (set REDIS_URL for a real server)"
    print(f"streaming {EXAMPLE.name} as build {build_id} through {where}\n", flush=True)
    try:
        streamer = LogStreamer(redis, build_id, "build")
        printed, exit_code = await asyncio.gather(tail(LogReader(redis), build_id, use_colour()), run_example(streamer))
    finally:
        await redis.aclose()
    print(f"\n{printed} entries streamed; the example exited with {exit_code} (the failure is part of the demo)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
