"""The stage registry: the error names the state machine retries or catches, per-stage tables."""

import re

import pytest

from buildlogs.errors import CommandFailed, SandboxUnavailable
from buildlogs.pipeline.stages import COMMAND_FAILED, SANDBOX_UNAVAILABLE, STAGES, STAGES_BY_NAME, require_every_stage


def test_error_class_names_are_the_step_functions_error_names() -> None:
    # Lambda reports an exception's class name as its errorType, which Retry/Catch match on.
    assert CommandFailed.__name__ == COMMAND_FAILED
    assert SandboxUnavailable.__name__ == SANDBOX_UNAVAILABLE
    assert all(stage.retryable_errors == (SANDBOX_UNAVAILABLE,) for stage in STAGES)


def test_a_per_stage_table_must_cover_exactly_the_registry() -> None:
    # GIVEN the registry as the one list of stages
    # WHEN a table misses a stage or names an unknown one THEN importing its module fails loudly
    with pytest.raises(RuntimeError, match=re.escape("missing {'cleanup'}")):
        require_every_stage({name: 1 for name in STAGES_BY_NAME if name != "cleanup"}, "STEPS")
    with pytest.raises(RuntimeError, match=re.escape("unknown {'deploy'}")):
        require_every_stage({**dict.fromkeys(STAGES_BY_NAME, 1), "deploy": 1}, "STEPS")
    require_every_stage(dict.fromkeys(STAGES_BY_NAME, 1), "STEPS")  # the whole registry: fine
