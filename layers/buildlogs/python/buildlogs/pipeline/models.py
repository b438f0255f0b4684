"""The pipeline's models: BuildSpec (the request), ExecutionState (what travels between states), stage I/O."""

import re
from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from buildlogs.keys import validate_build_id, validate_sandbox_id
from buildlogs.pipeline.stages import STAGES, get_stage, require_every_stage

# -- BuildSpec and the execution state ----------------------------------------------------------

MAX_FILES = 500
MAX_FILE_BYTES = 1_000_000
MAX_TOTAL_FILE_BYTES = 5_000_000
MAX_PATH_CHARS = 256
MAX_COMMAND_CHARS = 4_096
MAX_ENV_VARS = 100
MAX_ENV_VALUE_CHARS = 4_096
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_TEMPLATE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")
# Stages whose commands a spec may time-box itself (never above the stage Lambda's timeout).
TIMED_STAGES = tuple(stage.name for stage in STAGES if stage.timed_by_spec)


def _check_relative_path(path: str) -> str:
    if not path or len(path) > MAX_PATH_CHARS:
        raise ValueError(f"file path must be 1-{MAX_PATH_CHARS} characters: {path[:80]!r}")
    if "\x00" in path or "\\" in path:
        raise ValueError(f"file path must not contain NUL or backslashes: {path[:80]!r}")
    if path.startswith("/") or PurePosixPath(path).is_absolute():
        raise ValueError(f"file path must be relative: {path[:80]!r}")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise ValueError(f"file path must not contain '.', '..' or empty segments: {path[:80]!r}")
    return path


class BuildSpec(BaseModel):
    """The request body of ``POST /builds``: what to write into the sandbox and what to run.

    ``env`` values are secrets: they reach the commands' environment and are masked in logs.

    An iteration build (``iterate_from``: an earlier SUCCEEDED build) sends only what changed:
    ``files`` changed or added, ``deleted`` paths, and any field it changes (``start`` and ``port``
    are then optional); the API stores the resolved spec (the earlier build's, with the changes).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    build_id: str | None = None
    iterate_from: str | None = None
    template: str = "base"
    files: dict[str, str] = Field(default_factory=dict)
    deleted: list[str] = Field(default_factory=list)
    # An iteration request whose ``files`` are the whole project: every file of the earlier build
    # not among them is deleted (the API computes ``deleted``; ``buildlogs submit --iterate-from``).
    complete_files: bool = False
    install: str | None = None
    build: str | None = None
    start: str = Field(default="", validate_default=True)  # required unless iterate_from
    port: int = Field(default=0, le=65535, validate_default=True)  # 1-65535; left out (0) only in an iteration request
    healthcheck_path: str = "/"
    env: dict[str, str] = Field(default_factory=dict)
    timeouts: dict[str, int] = Field(default_factory=dict)

    @field_validator("build_id", "iterate_from")
    @classmethod
    def _build_id(cls, value: str | None) -> str | None:
        return None if value is None else validate_build_id(value)

    @field_validator("deleted")
    @classmethod
    def _deleted(cls, paths: list[str]) -> list[str]:
        if len(paths) > MAX_FILES:
            raise ValueError(f"at most {MAX_FILES} deleted paths, got {len(paths)}")
        for path in paths:
            _check_relative_path(path)
        return paths

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        if not _TEMPLATE.fullmatch(value):
            raise ValueError("template must be an E2B template name or id")
        return value

    @field_validator("files")
    @classmethod
    def _files(cls, files: dict[str, str]) -> dict[str, str]:
        if len(files) > MAX_FILES:
            raise ValueError(f"at most {MAX_FILES} files, got {len(files)}")
        total = 0
        for path, text in files.items():
            _check_relative_path(path)
            size = len(text.encode("utf-8", "surrogatepass"))  # exact UTF-8 is checked by _utf8_only
            if size > MAX_FILE_BYTES:
                raise ValueError(f"file {path!r} is {size} bytes; the limit is {MAX_FILE_BYTES}")
            total += size
        if total > MAX_TOTAL_FILE_BYTES:
            raise ValueError(f"files total {total} bytes; the limit is {MAX_TOTAL_FILE_BYTES}")
        return files

    @field_validator("install", "build")
    @classmethod
    def _command(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if len(value) > MAX_COMMAND_CHARS or "\x00" in value:
            raise ValueError(f"a command must be at most {MAX_COMMAND_CHARS} characters, without NUL")
        return value or None

    @field_validator("start")
    @classmethod
    def _start(cls, value: str, info: ValidationInfo) -> str:
        """Required, except in an iteration request (then the earlier build's)."""
        value = cls._command(value) or ""
        if not value and info.data.get("iterate_from") is None:
            raise ValueError("start command is required")
        return value

    @field_validator("port")
    @classmethod
    def _port(cls, value: int, info: ValidationInfo) -> int:
        """1-65535; left out (0) only in an iteration request (then the earlier build's)."""
        iteration = info.data.get("iterate_from") is not None
        if not (value >= 1 or (iteration and value == 0)):
            raise ValueError("Input should be greater than or equal to 1")
        return value

    @field_validator("deleted")
    @classmethod
    def _deleted_only_in_iterations(cls, paths: list[str], info: ValidationInfo) -> list[str]:
        if paths and info.data.get("iterate_from") is None:
            raise ValueError("deleted is only for an iteration build (with iterate_from)")
        return paths

    @model_validator(mode="after")
    def _iteration_consistent(self) -> "BuildSpec":
        if self.complete_files and self.iterate_from is None:
            raise ValueError("complete_files is only for an iteration build (with iterate_from)")
        if self.complete_files and self.deleted:
            raise ValueError("with complete_files, deleted is computed from the earlier build: leave it out")
        both = sorted(set(self.deleted) & set(self.files))
        if both:
            raise ValueError(f"a path cannot be both in files and deleted: {both[0][:80]!r}")
        if self.iterate_from is not None and self.iterate_from == self.build_id:
            raise ValueError("a build cannot iterate from itself")
        return self

    @property
    def is_iteration(self) -> bool:
        return self.iterate_from is not None

    def resolved_iteration(self, earlier: "BuildSpec") -> "BuildSpec":
        """The spec an iteration request stands for: ``earlier``'s with this request's changes.

        ``files`` are the earlier build's less ``deleted`` plus the changed ones; every other field
        the request set replaces the earlier one (``build_id`` is this request's own). The result
        is validated as a whole (the limits apply to the whole project), ``ValueError`` if not.
        """
        if self.iterate_from is None:
            raise ValueError("not an iteration request")
        if "template" in self.model_fields_set and self.template != earlier.template:
            raise ValueError("template cannot change in an iteration build (the sandbox is the earlier build's)")
        unknown = sorted(path for path in self.deleted if path not in earlier.files)
        if unknown:
            raise ValueError(f"deleted: {unknown[0][:80]!r} is not a file of build {self.iterate_from}")
        deleted = list(self.deleted)
        if self.complete_files:  # the request's files are the project: the earlier ones it lacks are gone
            deleted = sorted(path for path in earlier.files if path not in self.files)
        files = {path: text for path, text in earlier.files.items() if path not in set(deleted)}
        files.update(self.files)
        inherited = {"build_id", "iterate_from", "files", "deleted", "complete_files"}
        changes = {name: getattr(self, name) for name in self.model_fields_set - inherited}
        merged = {
            **earlier.model_dump(exclude={"build_id", "iterate_from", "deleted", "complete_files"}),
            **changes,
            "files": files,
            "deleted": deleted,
            "build_id": self.build_id,
            "iterate_from": self.iterate_from,
        }
        resolved = BuildSpec.model_validate(merged)
        if not resolved.start or resolved.port < 1:
            raise ValueError("an iteration needs a start command and a port 1-65535 (its own or the earlier build's)")
        return resolved

    @field_validator("healthcheck_path")
    @classmethod
    def _healthcheck_path(cls, value: str) -> str:
        if not value.startswith("/") or len(value) > 1024 or any(c in value for c in " \r\n\t\x00#"):
            raise ValueError("healthcheck_path must be an absolute URL path like /health")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, env: dict[str, str]) -> dict[str, str]:
        if len(env) > MAX_ENV_VARS:
            raise ValueError(f"at most {MAX_ENV_VARS} env variables, got {len(env)}")
        for name, value in env.items():
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"invalid env variable name {name[:80]!r}")
            if len(value) > MAX_ENV_VALUE_CHARS or "\x00" in value:
                raise ValueError(f"env variable {name} is too long or contains NUL")
        return env

    @field_validator("timeouts")
    @classmethod
    def _timeouts(cls, timeouts: dict[str, int]) -> dict[str, int]:
        for name, seconds in timeouts.items():
            if name not in TIMED_STAGES:
                raise ValueError(f"timeouts: {name!r} is not one of {', '.join(TIMED_STAGES)}")
            limit = command_timeout_limit(name)
            if not 1 <= seconds <= limit:
                raise ValueError(f"timeouts.{name} must be between 1 and {limit} seconds")
        return timeouts

    @model_validator(mode="after")
    def _utf8_only(self) -> "BuildSpec":
        """Every string must be valid UTF-8 (a lone surrogate from JSON's \\ud800 is not)."""
        texts: list[tuple[str, str | None]] = [
            ("template", self.template),
            ("start", self.start),
            *(("deleted", path) for path in self.deleted),
            ("install", self.install),
            ("build", self.build),
            ("healthcheck_path", self.healthcheck_path),
        ]
        for where, mapping in (("files", self.files), ("env", self.env)):
            texts += [(f"{where}: {name[:80]!r}", text) for name, value in mapping.items() for text in (name, value)]
        for where, text in texts:
            try:
                if text is not None:
                    text.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"{where} is not valid UTF-8 text") from None
        return self

    @property
    def secrets(self) -> list[str]:
        """The values LogStreamer must mask."""
        return [value for value in self.env.values() if value]

    def timeout_for(self, stage: str) -> int:
        """The command timeout of ``stage``: the spec's own, else the stage's limit."""
        return self.timeouts.get(stage) or command_timeout_limit(stage)


# Seconds a stage keeps for itself (streaming, cleanup) under its Lambda timeout.
STAGE_OVERHEAD_SECONDS = 15


def command_timeout_limit(stage: str) -> int:
    """The longest a command of ``stage`` may run: its Lambda timeout minus the overhead."""
    return max(1, get_stage(stage).timeout_seconds - STAGE_OVERHEAD_SECONDS)


class ExecutionState(BaseModel):
    """What travels between the states of a run: small, never project files.

    Extra keys (e.g. a Catch's ``error``) pass through untouched.
    """

    model_config = ConfigDict(extra="allow")

    build_id: str
    spec_ref: str = Field(min_length=1, max_length=1024)
    sandbox_id: str | None = Field(default=None, min_length=1, max_length=128)
    preview_url: str | None = Field(default=None, max_length=2048)
    # An iteration build: the earlier build whose sandbox (``sandbox_id`` from the start) it reuses.
    iterate_from: str | None = None

    @field_validator("build_id")
    @classmethod
    def _valid_build_id(cls, value: str) -> str:
        return validate_build_id(value)

    @field_validator("sandbox_id")
    @classmethod
    def _valid_sandbox_id(cls, value: str | None) -> str | None:
        """An E2B or ``local-…`` id: nothing else reaches ``AsyncSandbox.connect`` or a Redis key."""
        return None if value is None else validate_sandbox_id(value)

    def updated(self, **changes: Any) -> dict[str, Any]:
        """The JSON state the next state receives: this state with ``changes`` applied."""
        return {**self.model_dump(mode="json", exclude_none=True), **changes}


class ProvisionInput(ExecutionState):
    """The execution input: what ``POST /builds`` starts the run with."""


class SandboxStageInput(ExecutionState):
    """Input of the stages that run in the build's sandbox (created by provision)."""

    sandbox_id: str = Field(min_length=1, max_length=128)


class HealthCheckInput(SandboxStageInput):
    """Health check input: the dev server's URL comes from start."""

    preview_url: str = Field(min_length=1, max_length=2048)


class CleanupInput(ExecutionState):
    """Cleanup runs after any failure, possibly before a sandbox existed; ``error`` is the Catch's."""

    error: dict[str, Any] | None = None


# Each stage's input model; a stage's output validates as the next stage's input.
STAGE_INPUTS: dict[str, type[ExecutionState]] = {
    "provision": ProvisionInput,
    "scaffold": SandboxStageInput,
    "install": SandboxStageInput,
    "build": SandboxStageInput,
    "start": SandboxStageInput,
    "healthcheck": HealthCheckInput,
    "cleanup": CleanupInput,
}
# Each stage's output model (cleanup's output ends the run).
STAGE_OUTPUTS: dict[str, type[ExecutionState]] = {
    "provision": SandboxStageInput,
    "scaffold": SandboxStageInput,
    "install": SandboxStageInput,
    "build": SandboxStageInput,
    "start": HealthCheckInput,
    "healthcheck": HealthCheckInput,
    "cleanup": ExecutionState,
}
require_every_stage(STAGE_INPUTS, "STAGE_INPUTS")
require_every_stage(STAGE_OUTPUTS, "STAGE_OUTPUTS")
