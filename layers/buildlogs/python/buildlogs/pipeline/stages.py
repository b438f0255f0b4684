"""The stage registry: the one place that lists the build stages and their order.

The state machine, the stage handler, the local runner and the tests all read ``STAGES``;
log entries carry the stage ``name`` as their ``phase``.
"""

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Stage:
    """One build stage: one Lambda function, one state in the state machine."""

    name: str  # the phase of its log entries, the stage Lambda's STAGE
    state: str  # its state's name in the state machine (the Step Functions console shows it)
    label: str  # the stage-change line: ``--- <label> ---``
    timeout_seconds: int  # the stage Lambda's timeout (the command timeouts stay below it)
    retryable_errors: tuple[str, ...] = ()  # error names Step Functions retries with backoff
    on_failure: bool = False  # runs only when an earlier stage failed (Catch -> cleanup)
    timed_by_spec: bool = False  # runs the spec's commands; BuildSpec.timeouts may shorten them

    @property
    def banner(self) -> str:
        return f"--- {self.label} ---"


SANDBOX_UNAVAILABLE = "SandboxUnavailable"
COMMAND_FAILED = "CommandFailed"

STAGES: tuple[Stage, ...] = (
    Stage("provision", "Provision", "Provisioning sandbox", 120, (SANDBOX_UNAVAILABLE,)),
    Stage("scaffold", "Scaffold", "Scaffolding files", 120, (SANDBOX_UNAVAILABLE,)),
    Stage("install", "Install", "Installing dependencies", 900, (SANDBOX_UNAVAILABLE,), timed_by_spec=True),
    Stage("build", "Build", "Building project", 900, (SANDBOX_UNAVAILABLE,), timed_by_spec=True),
    Stage("start", "Start", "Starting dev server", 300, (SANDBOX_UNAVAILABLE,), timed_by_spec=True),
    Stage("healthcheck", "HealthCheck", "Checking health", 120, (SANDBOX_UNAVAILABLE,), timed_by_spec=True),
    Stage("cleanup", "Cleanup", "Cleaning up", 120, (SANDBOX_UNAVAILABLE,), on_failure=True),
)

STAGES_BY_NAME: dict[str, Stage] = {stage.name: stage for stage in STAGES}

# The happy path, in order (cleanup only runs on failure).
PIPELINE: tuple[Stage, ...] = tuple(stage for stage in STAGES if not stage.on_failure)
CLEANUP: Stage = next(stage for stage in STAGES if stage.on_failure)


def get_stage(name: str) -> Stage:
    """The registry entry for ``name``; a clear error for a name that is not a stage."""
    try:
        return STAGES_BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES_BY_NAME)}") from None


def require_every_stage(mapping: Mapping[str, object], what: str) -> None:
    """Fail at import when a per-stage table (steps, models) and the registry disagree."""
    missing, unknown = set(STAGES_BY_NAME) - set(mapping), set(mapping) - set(STAGES_BY_NAME)
    if missing or unknown:
        raise RuntimeError(f"{what} must cover exactly the registry's stages: missing {missing}, unknown {unknown}")


def banner_for(phase: str) -> str:
    """The stage-change line for a phase; a phase outside the registry gets its own name."""
    stage = STAGES_BY_NAME.get(phase)
    return stage.banner if stage else f"--- {phase} ---"
