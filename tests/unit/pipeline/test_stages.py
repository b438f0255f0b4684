"""The typed errors' names are the ones the state machine retries or catches."""

import re

import pytest

from buildlogs.errors import CommandFailed, SandboxUnavailable
from buildlogs.pipeline.models import STAGE_OVERHEAD_SECONDS, command_timeout_limit
from buildlogs.pipeline.stages import COMMAND_FAILED, SANDBOX_UNAVAILABLE, STAGES, STAGES_BY_NAME, require_every_stage


def test_error_class_names_are_the_step_functions_error_names() -> None:
    # Lambda reports an exception's class name as its errorType, which Retry/Catch match on.
    assert CommandFailed.__name__ == COMMAND_FAILED
    assert SandboxUnavailable.__name__ == SANDBOX_UNAVAILABLE
    assert all(stage.retryable_errors == (SANDBOX_UNAVAILABLE,) for stage in STAGES)


def test_errors_carry_a_friendly_message_and_the_exit_code() -> None:
    error = CommandFailed("install command exited with code 3: npm ci", 3)
    assert (str(error), error.message, error.exit_code) == ("install command exited with code 3: npm ci",) * 2 + (3,)


def test_command_timeouts_stay_below_each_stage_lambda_timeout() -> None:
    for stage in STAGES:
        assert command_timeout_limit(stage.name) == stage.timeout_seconds - STAGE_OVERHEAD_SECONDS


def test_a_per_stage_table_must_cover_exactly_the_registry() -> None:
    # GIVEN the registry as the one list of stages
    # WHEN a table misses a stage or names an unknown one THEN importing its module fails loudly
    with pytest.raises(RuntimeError, match=re.escape("missing {'cleanup'}")):
        require_every_stage({name: 1 for name in STAGES_BY_NAME if name != "cleanup"}, "STEPS")
    with pytest.raises(RuntimeError, match=re.escape("unknown {'deploy'}")):
        require_every_stage({**dict.fromkeys(STAGES_BY_NAME, 1), "deploy": 1}, "STEPS")
    require_every_stage(dict.fromkeys(STAGES_BY_NAME, 1), "STEPS")  # the whole registry: fine
