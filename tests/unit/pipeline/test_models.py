"""BuildSpec validation and the execution-state models that travel between stages."""

from typing import Any

import pytest
from pydantic import ValidationError

from buildlogs.pipeline.models import (
    MAX_FILE_BYTES,
    MAX_FILES,
    STAGE_INPUTS,
    STAGE_OUTPUTS,
    STAGE_OVERHEAD_SECONDS,
    BuildSpec,
    ExecutionState,
    command_timeout_limit,
)
from buildlogs.pipeline.stages import CLEANUP, PIPELINE, STAGES

VALID: dict[str, Any] = {"start": "npm run dev", "port": 3000}


def spec(**changes: Any) -> BuildSpec:
    return BuildSpec.model_validate({**VALID, **changes})


def test_a_minimal_spec_gets_its_defaults() -> None:
    built = spec()
    assert (built.template, built.healthcheck_path, built.files, built.env, built.install) == (
        "base",
        "/",
        {},
        {},
        None,
    )
    assert built.timeout_for("install") == command_timeout_limit("install")


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "../x", "a/../../x", "a/./b", "a//b", "dir/", "a\x00b", "C:\\x", "", "x" * 300]
)
def test_file_paths_must_be_plain_relative_paths(path: str) -> None:
    with pytest.raises(ValidationError, match="file path"):
        spec(files={path: "x"})


def test_nested_relative_paths_are_fine() -> None:
    assert spec(files={"src/app/main.ts": "x", ".env.example": "y"}).files["src/app/main.ts"] == "x"


def test_file_count_and_size_limits() -> None:
    with pytest.raises(ValidationError, match=f"at most {MAX_FILES} files"):
        spec(files={f"f{i}.txt": "" for i in range(MAX_FILES + 1)})
    with pytest.raises(ValidationError, match="the limit is"):
        spec(files={"big.txt": "x" * (MAX_FILE_BYTES + 1)})


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_port_range(port: int) -> None:
    with pytest.raises(ValidationError, match="port"):
        spec(port=port)


@pytest.mark.parametrize("name", ["1ABC", "A-B", "A B", "", "A=B"])
def test_env_names(name: str) -> None:
    with pytest.raises(ValidationError, match="env variable name"):
        spec(env={name: "v"})


def test_env_values_are_the_secrets() -> None:
    assert spec(env={"TOKEN": "abc", "EMPTY": ""}).secrets == ["abc"]


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"build_id": "../bad"}, "invalid build id"),
        ({"start": "   "}, "start command is required"),
        ({"healthcheck_path": "health"}, "healthcheck_path"),
        ({"timeouts": {"provision": 5}}, "not one of"),
        ({"timeouts": {"install": 10_000}}, "between 1 and"),
        ({"unknown": 1}, "Extra inputs"),
    ],
)
def test_invalid_specs_say_why(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        spec(**changes)


def test_per_stage_timeouts_override_the_default() -> None:
    assert spec(timeouts={"install": 30}).timeout_for("install") == 30


def test_every_stage_has_input_and_output_models() -> None:
    assert set(STAGE_INPUTS) == set(STAGE_OUTPUTS) == {stage.name for stage in STAGES}


def _sample_output(stage: str, state: dict[str, Any]) -> dict[str, Any]:
    """What each stage adds to the state (as stage_steps returns it)."""
    changes = {"provision": {"sandbox_id": "sbx-1"}, "start": {"preview_url": "https://3000-sbx-1.e2b.app"}}
    return {**state, **changes.get(stage, {})}


def test_each_stage_output_validates_as_the_next_stage_input() -> None:
    # GIVEN the execution input POST /builds starts a run with
    state: dict[str, Any] = {"build_id": "b-1", "spec_ref": "s3://sources/sources/b-1/spec.json"}
    for stage, following in zip(PIPELINE, [*PIPELINE[1:], None], strict=True):
        # WHEN a stage's output is produced
        state = (
            STAGE_OUTPUTS[stage.name]
            .model_validate(_sample_output(stage.name, state))
            .model_dump(mode="json", exclude_none=True)
        )
        # THEN it is valid input for the next stage, and for cleanup after a Catch
        if following is not None:
            STAGE_INPUTS[following.name].model_validate(state)
        STAGE_INPUTS[CLEANUP.name].model_validate({**state, "error": {"Error": "CommandFailed", "Cause": "x"}})
    assert set(state) == {"build_id", "spec_ref", "sandbox_id", "preview_url"}


def test_a_stage_needing_the_sandbox_refuses_a_state_without_it() -> None:
    with pytest.raises(ValidationError, match="sandbox_id"):
        STAGE_INPUTS["install"].model_validate({"build_id": "b-1", "spec_ref": "s3://b/k"})
    with pytest.raises(ValidationError, match="preview_url"):
        STAGE_INPUTS["healthcheck"].model_validate({"build_id": "b-1", "spec_ref": "s3://b/k", "sandbox_id": "s"})


def test_extra_state_keys_pass_through_to_the_next_state() -> None:
    state = STAGE_INPUTS["cleanup"].model_validate({"build_id": "b-1", "spec_ref": "s3://b/k", "attempt": 2})
    assert state.updated()["attempt"] == 2


def test_command_timeouts_stay_below_each_stage_lambda_timeout() -> None:
    for stage in STAGES:
        assert command_timeout_limit(stage.name) == stage.timeout_seconds - STAGE_OVERHEAD_SECONDS


# -- iteration requests (issue 12) --------------------------------------------------------------

EARLIER = spec(files={"app.py": "v1", "README.md": "r", "package.json": "{}"}, install="npm ci", env={"K": "v"})


def test_an_iteration_request_needs_no_start_nor_port() -> None:
    request = BuildSpec.model_validate({"iterate_from": "b-1", "files": {"app.py": "v2"}})
    assert (request.start, request.port, request.is_iteration) == ("", 0, True)


def test_a_first_build_still_needs_start_and_port_and_no_deleted() -> None:
    with pytest.raises(ValidationError, match="start command is required"):
        BuildSpec.model_validate({"port": 3000})
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        BuildSpec.model_validate({"start": "x"})
    with pytest.raises(ValidationError, match="deleted is only for an iteration build"):
        spec(deleted=["a"])


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a//b", ""])
def test_deleted_paths_are_validated_like_files(path: str) -> None:
    with pytest.raises(ValidationError, match="file path"):
        BuildSpec.model_validate({"iterate_from": "b-1", "deleted": [path]})


def test_a_path_cannot_be_both_changed_and_deleted_nor_iterate_from_itself() -> None:
    with pytest.raises(ValidationError, match="both in files and deleted"):
        BuildSpec.model_validate({"iterate_from": "b-1", "files": {"a": "x"}, "deleted": ["a"]})
    with pytest.raises(ValidationError, match="cannot iterate from itself"):
        BuildSpec.model_validate({"iterate_from": "b-1", "build_id": "b-1"})


def test_an_iteration_resolves_to_the_earlier_spec_with_its_changes() -> None:
    # GIVEN a request changing one file, deleting one and changing the build command
    request = BuildSpec.model_validate(
        {"iterate_from": "b-1", "build_id": "b-2", "files": {"app.py": "v2"}, "deleted": ["README.md"], "build": "b"}
    )
    # WHEN it is resolved against the earlier build's spec
    resolved = request.resolved_iteration(EARLIER)
    # THEN files are the earlier ones with the changes, and what the request left out is inherited
    assert resolved.files == {"app.py": "v2", "package.json": "{}"}
    assert (resolved.start, resolved.port, resolved.install, resolved.build) == ("npm run dev", 3000, "npm ci", "b")
    assert (resolved.env, resolved.build_id, resolved.iterate_from, resolved.deleted) == (
        {"K": "v"},
        "b-2",
        "b-1",
        ["README.md"],
    )


def test_an_iteration_that_does_not_apply_is_refused() -> None:
    with pytest.raises(ValueError, match="is not a file of build b-1"):
        BuildSpec.model_validate({"iterate_from": "b-1", "deleted": ["nope.txt"]}).resolved_iteration(EARLIER)
    with pytest.raises(ValueError, match="template cannot change"):
        BuildSpec.model_validate({"iterate_from": "b-1", "template": "other"}).resolved_iteration(EARLIER)
    with pytest.raises(ValueError, match="not an iteration request"):
        EARLIER.resolved_iteration(EARLIER)


def test_complete_files_deletes_every_earlier_file_the_request_lacks() -> None:
    # GIVEN a request carrying the whole project, without README.md (deleted locally)
    request = BuildSpec.model_validate(
        {"iterate_from": "b-1", "files": {"app.py": "v2", "package.json": "{}"}, "complete_files": True}
    )
    # WHEN it is resolved THEN README.md is deleted, the rest kept or changed
    resolved = request.resolved_iteration(EARLIER)
    assert resolved.files == {"app.py": "v2", "package.json": "{}"}
    assert resolved.deleted == ["README.md"]
    assert resolved.complete_files is False


def test_complete_files_is_only_for_an_iteration_and_never_with_deleted() -> None:
    with pytest.raises(ValidationError, match="complete_files is only for an iteration"):
        BuildSpec.model_validate({"start": "x", "port": 1, "complete_files": True})
    with pytest.raises(ValidationError, match="deleted is computed from the earlier build"):
        BuildSpec.model_validate({"iterate_from": "b-1", "deleted": ["README.md"], "complete_files": True})


@pytest.mark.parametrize("sandbox_id", ["../etc", "a b", "", "x" * 200, "sbx/1"])
def test_the_execution_state_refuses_a_sandbox_id_that_is_no_sandbox_id(sandbox_id: str) -> None:
    with pytest.raises(ValidationError):
        ExecutionState.model_validate({"build_id": "b-1", "spec_ref": "s3://b/k", "sandbox_id": sandbox_id})
    assert ExecutionState.model_validate({"build_id": "b-1", "spec_ref": "r", "sandbox_id": "local-b-1_x"}).sandbox_id
