"""The local stack (the deployed pipeline in-process) on the real Redis, one per test."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from buildlogs.client.local_run import LocalRunConfig, LocalStack
from tests.support.local_run import FAST_RETRIES


@pytest.fixture(scope="session")
def definition_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthesized definition for the session (synthesizing takes ~10 s)."""
    return tmp_path_factory.mktemp("definition-cache")


@pytest.fixture
def stack(
    tmp_path: Path, redis_url: str, definition_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalStack]:
    """A running local stack whose stages stream into the real Redis of REDIS_URL."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    for name in ("SOURCES_BUCKET", "LOG_ARCHIVE_BUCKET", "STATE_MACHINE_ARN"):
        monkeypatch.delenv(name, raising=False)
    config = LocalRunConfig(workdir=tmp_path / ".buildlogs", context=FAST_RETRIES, cache_dir=definition_cache)
    with LocalStack(config) as running:
        yield running
