"""POST /builds, GET /builds, GET /builds/{id}, POST /builds/{id}/cancel against moto and real Redis."""

import json
import re

import pytest

from buildlogs.api.app import app
from buildlogs.keys import BUILD_ID_PATTERN, spec_key
from tests.support.api import ARCHIVE, SOURCES, Api, archive_and_expire, rest_event, spec, write_log

pytestmark = [pytest.mark.redis, pytest.mark.usefixtures("api")]


def _execution(api: Api, build_id: str) -> dict:
    arn = api.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{build_id}"
    return api.sfn.describe_execution(executionArn=arn)


# -- POST /builds --------------------------------------------------------------------------------


def test_submit_stores_the_spec_and_starts_an_execution_named_by_the_build_id(api: Api, build_id: str) -> None:
    # GIVEN a valid spec with a client-chosen id
    body = spec(build_id=build_id, env={"API_TOKEN": "s3cr3t"})
    # WHEN it is submitted
    response = api.call("POST", "/builds", body)
    # THEN 202 with relative URLs, the spec is stored and the execution runs with its reference
    assert response.status == 202
    assert response.body == {
        "build_id": build_id,
        "status_url": f"/builds/{build_id}",
        "logs_url": f"/builds/{build_id}/logs",
    }
    stored = json.loads(api.s3.get_object(Bucket=SOURCES, Key=spec_key(build_id))["Body"].read())
    assert stored["start"] == "node index.js"
    assert stored["build_id"] == build_id
    execution = _execution(api, build_id)
    assert execution["status"] == "RUNNING"
    assert json.loads(execution["input"]) == {"build_id": build_id, "spec_ref": f"s3://{SOURCES}/{spec_key(build_id)}"}
    assert "s3cr3t" not in response.raw


def test_submit_without_an_id_generates_a_valid_one(api: Api) -> None:
    response = api.call("POST", "/builds", spec())
    assert response.status == 202
    assert re.fullmatch(BUILD_ID_PATTERN, response.body["build_id"])
    assert _execution(api, response.body["build_id"])["status"] == "RUNNING"


def test_the_same_spec_again_is_the_same_build(api: Api, build_id: str) -> None:
    # GIVEN a submitted build
    first = api.call("POST", "/builds", spec(build_id=build_id))
    # WHEN the same spec is submitted again
    again = api.call("POST", "/builds", spec(build_id=build_id))
    # THEN the same build is answered and there is still one execution
    assert (first.status, again.status) == (202, 202)
    assert again.body == first.body
    names = [e["name"] for e in api.sfn.list_executions(stateMachineArn=api.state_machine_arn)["executions"]]
    assert names.count(build_id) == 1


def test_the_same_spec_after_the_build_finished_is_still_the_same_build(api: Api, build_id: str) -> None:
    api.call("POST", "/builds", spec(build_id=build_id))
    assert api.call("POST", f"/builds/{build_id}/cancel").status == 202
    again = api.call("POST", "/builds", spec(build_id=build_id))
    assert again.status == 202
    assert _execution(api, build_id)["status"] == "ABORTED"


def test_the_same_id_with_another_spec_is_a_conflict(api: Api, build_id: str) -> None:
    # GIVEN a submitted build
    api.call("POST", "/builds", spec(build_id=build_id))
    # WHEN another spec claims its id
    response = api.call("POST", "/builds", spec(build_id=build_id, start="npm start"))
    # THEN 409, and the stored spec is untouched
    assert response.status == 409
    assert response.body["error"] == "conflict"
    stored = json.loads(api.s3.get_object(Bucket=SOURCES, Key=spec_key(build_id))["Body"].read())
    assert stored["start"] == "node index.js"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (spec(port=0), "port"),
        (spec(port=70000), "port"),
        ({"files": {}, "port": 3000}, "start"),
        (spec(files={"../etc/passwd": "x"}), "files"),
        (spec(files={"/abs": "x"}), "files"),
        (spec(build_id="has space"), "build_id"),
        (spec(env={"1BAD": "x"}), "env"),
        (spec(timeouts={"provision": 5}), "timeouts"),
        (spec(unknown=1), "unknown"),
    ],
)
def test_an_invalid_spec_is_a_400_naming_the_field(api: Api, body: dict, field: str) -> None:
    response = api.call("POST", "/builds", body)
    assert response.status == 400
    assert response.body["error"] == "invalid_request"
    assert response.body["field"] == field
    assert response.body["message"].startswith(f"{field}")
    assert set(response.body) == {"error", "message", "field"}


def test_a_spec_with_several_errors_lists_every_reason(api: Api) -> None:
    # GIVEN a spec wrong in three ways
    body = spec(port=0, template="bad template!", env={"1BAD": "x"})
    # WHEN it is submitted
    response = api.call("POST", "/builds", body)
    # THEN the 400 names the first in its message and lists all three
    assert response.status == 400
    reasons = response.body["reasons"]
    assert len(reasons) == 3
    assert {reason.split(":")[0] for reason in reasons} == {"port", "template", "env"}
    assert response.body["message"] == f"{reasons[0]} (and 2 more)"


def test_a_body_that_is_not_utf8_is_a_400(api: Api) -> None:
    # GIVEN a request whose (base64, as API Gateway sends binary media) body is not UTF-8
    event = rest_event("POST", "/builds", body=b"\xe0\x80{}")
    # WHEN the API resolves it
    result = app.resolve(event, None)  # type: ignore[arg-type]
    # THEN it is a clear 400, not a 500
    assert result["statusCode"] == 400
    assert json.loads(result["body"]) == {"error": "invalid_request", "message": "the body is not valid UTF-8 JSON"}


@pytest.mark.parametrize(
    "body",
    [spec(start="node \ud800.js"), spec(files={"a.txt": "\udc00"}), spec(env={"TOKEN": "x\ud800"})],
)
def test_text_that_is_not_utf8_is_a_400_not_a_500(api: Api, body: dict) -> None:
    # GIVEN JSON whose \\uXXXX escapes decode to a lone surrogate (valid JSON, not valid text)
    response = api.call("POST", "/builds", body)
    # THEN it is refused with a reason, and nothing was started
    assert response.status == 400
    assert response.body["error"] == "invalid_request"
    assert "UTF-8" in response.body["message"]
    assert api.call("GET", "/builds").body["builds"] == []


def test_a_body_that_is_not_json_is_a_400(api: Api) -> None:
    response = api.call("POST", "/builds", raw="{not json")
    assert response.status == 400
    assert response.body == {"error": "invalid_request", "message": "the body is not valid JSON"}


def test_an_empty_body_is_a_400(api: Api) -> None:
    response = api.call("POST", "/builds")
    assert response.status == 400
    assert response.body["error"] == "invalid_request"


def test_an_oversized_body_is_a_413(api: Api) -> None:
    # GIVEN a body over the limit (valid JSON or not, it is never parsed into a build)
    big = json.dumps(spec(files={"big.txt": "x" * (6 * 1024 * 1024 + 1)}))
    response = api.call("POST", "/builds", raw=big)
    assert response.status == 413
    assert response.body["error"] == "payload_too_large"
    padded = json.dumps(spec()) + " " * (6 * 1024 * 1024 + 1)
    assert api.call("POST", "/builds", raw=padded).status == 413


def test_secret_env_values_never_reach_an_error_body(api: Api) -> None:
    response = api.call("POST", "/builds", spec(port=0, env={"TOKEN": "hunter2-secret"}))
    assert response.status == 400
    assert "hunter2-secret" not in response.raw


# -- GET /builds ---------------------------------------------------------------------------------


def test_list_is_newest_first_and_pages_with_an_opaque_token(api: Api) -> None:
    # GIVEN three builds, the last one cancelled
    ids = [f"list-{i}" for i in range(3)]
    for build_id in ids:
        assert api.call("POST", "/builds", spec(build_id=build_id)).status == 202
    api.call("POST", f"/builds/{ids[2]}/cancel")
    # WHEN they are listed two per page
    first = api.call("GET", "/builds?limit=2")
    second = api.call("GET", f"/builds?limit=2&next={first.body['next']}")
    # THEN every build appears once, newest first, with its URLs
    listed = [b["build_id"] for b in first.body["builds"] + second.body["builds"]]
    assert listed == list(reversed(ids))
    assert second.body["next"] is None
    assert first.body["builds"][0]["status_url"] == f"/builds/{ids[2]}"
    assert first.body["builds"][0]["status"] == "ABORTED"
    # AND the status filter keeps only matching runs
    running = api.call("GET", "/builds?status=RUNNING")
    assert [b["build_id"] for b in running.body["builds"]] == [ids[1], ids[0]]


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=101", "limit=x", "status=DONE", "next=not-a-token", "next=eyJmb28iOiAxfQ"]
)
def test_list_rejects_bad_parameters_with_400(api: Api, query: str) -> None:
    response = api.call("GET", f"/builds?{query}")
    assert response.status == 400
    assert response.body["error"] == "invalid_request"


# -- GET /builds/{id} ------------------------------------------------------------------------------


def test_status_of_a_running_build_shows_its_stages_from_the_stream(api: Api, redis_url: str, build_id: str) -> None:
    # GIVEN a running build whose log has a finished stage, a failed stage and a running one
    api.call("POST", "/builds", spec(build_id=build_id, env={"TOKEN": "hunter2-secret"}))
    write_log(
        redis_url,
        build_id,
        [
            ("stage", "provision", {}),
            ("end_stage", "", {"exit_code": 0}),
            ("stage", "start", {}),
            (
                "event",
                "Dev server listening on port 3000: https://3000-sbx.e2b.app",
                {"preview_url": "https://3000-sbx.e2b.app"},
            ),
            ("stage", "install", {}),
            ("stdout", "installing", {}),
        ],
    )
    # WHEN its status is read
    response = api.call("GET", f"/builds/{build_id}")
    # THEN status, stages (status, start, duration) and the preview URL are there; no secret
    assert response.status == 200
    body = response.body
    assert body["status"] == "RUNNING"
    assert body["started_at"]
    stages = {s["name"]: s for s in body["stages"]}
    assert list(stages) == ["provision", "start", "install"]
    assert stages["provision"]["status"] == "succeeded"
    assert stages["provision"]["exit_code"] == 0
    assert stages["provision"]["duration_ms"] >= 0
    assert stages["provision"]["started_at"]
    assert stages["start"]["status"] == "succeeded"
    assert stages["install"]["status"] == "running"
    assert body["preview_url"] == "https://3000-sbx.e2b.app"
    assert body["archive"] is None
    assert body["logs_url"] == f"/builds/{build_id}/logs"
    assert "hunter2-secret" not in response.raw


def test_status_after_archival_reads_stages_from_the_archive(api: Api, redis_url: str, build_id: str) -> None:
    # GIVEN a build that failed in build, archived, its stream expired
    api.call("POST", "/builds", spec(build_id=build_id))
    write_log(
        redis_url,
        build_id,
        [
            ("stage", "build", {}),
            ("stderr", "boom", {}),
            ("event", "BUILD FAILED: command exited with code 2", {"event": "build_failed"}),
            ("end_stage", "", {"exit_code": 2}),
        ],
    )
    api.call("POST", f"/builds/{build_id}/cancel")
    archive_and_expire(redis_url, api.s3, build_id, "ABORTED")
    # WHEN its status is read
    body = api.call("GET", f"/builds/{build_id}").body
    # THEN the stages come from the archive and the archive location is shown
    assert body["status"] == "ABORTED"
    assert body["stopped_at"]
    assert body["stages"] == [
        {
            "name": "build",
            "status": "failed",
            "started_at": body["stages"][0]["started_at"],
            "duration_ms": body["stages"][0]["duration_ms"],
            "exit_code": 2,
        }
    ]
    assert body["archive"]["bucket"] == ARCHIVE
    assert body["archive"]["key"] == f"build-logs/{build_id}/build.jsonl"
    assert body["archive"]["uri"] == f"s3://{ARCHIVE}/build-logs/{build_id}/build.jsonl"
    assert body["archive"]["lines"] == 6  # stage_start, stderr, build_failed, stage_end, BUILD ABORTED, end


def test_a_stage_left_running_by_a_finished_build_is_interrupted(api: Api, redis_url: str, build_id: str) -> None:
    api.call("POST", "/builds", spec(build_id=build_id))
    write_log(redis_url, build_id, [("stage", "install", {})])
    api.call("POST", f"/builds/{build_id}/cancel")
    stages = api.call("GET", f"/builds/{build_id}").body["stages"]
    assert [(s["name"], s["status"]) for s in stages] == [("install", "interrupted")]


def test_a_build_with_only_its_spec_stored_is_pending(api: Api, build_id: str) -> None:
    api.s3.put_object(Bucket=SOURCES, Key=spec_key(build_id), Body=json.dumps(spec(build_id=build_id)))
    response = api.call("GET", f"/builds/{build_id}")
    assert response.status == 200
    assert response.body["status"] == "PENDING"


def test_status_of_an_unknown_build_is_a_404(api: Api, build_id: str) -> None:
    response = api.call("GET", f"/builds/{build_id}")
    assert response.status == 404
    assert response.body == {"error": "not_found", "message": f"no build {build_id}"}


@pytest.mark.parametrize("bad", ["-starts-with-dash", "a" * 65, "semi;colon", "dot.ted"])
def test_an_invalid_build_id_is_a_400(api: Api, bad: str) -> None:
    for path in (f"/builds/{bad}", f"/builds/{bad}/logs"):
        response = api.call("GET", path)
        assert response.status == 400, path
        assert response.body["error"] == "invalid_request"
    assert api.call("POST", f"/builds/{bad}/cancel").status == 400


# -- POST /builds/{id}/cancel ----------------------------------------------------------------------


def test_cancel_stops_a_running_build(api: Api, build_id: str) -> None:
    api.call("POST", "/builds", spec(build_id=build_id))
    response = api.call("POST", f"/builds/{build_id}/cancel")
    assert response.status == 202
    assert response.body == {"build_id": build_id, "status": "ABORTING", "status_url": f"/builds/{build_id}"}
    assert _execution(api, build_id)["status"] == "ABORTED"


def test_cancel_of_a_finished_build_is_a_409(api: Api, build_id: str) -> None:
    api.call("POST", "/builds", spec(build_id=build_id))
    api.call("POST", f"/builds/{build_id}/cancel")
    response = api.call("POST", f"/builds/{build_id}/cancel")
    assert response.status == 409
    assert response.body["error"] == "conflict"


def test_cancel_of_an_unknown_build_is_a_404(api: Api, build_id: str) -> None:
    assert api.call("POST", f"/builds/{build_id}/cancel").status == 404


# -- everything else -----------------------------------------------------------------------------


def test_unknown_routes_and_methods_are_json_404s(api: Api) -> None:
    for method, path in (("GET", "/nope"), ("DELETE", "/builds"), ("PUT", "/builds/x")):
        response = api.call(method, path)
        assert response.status == 404
        assert response.body == {"error": "not_found", "message": "no such route"}


def test_an_internal_failure_is_a_json_500_without_internals(api: Api, build_id: str) -> None:
    # GIVEN Step Functions failing in an unexpected way
    def broken(**_kwargs: object) -> None:
        raise RuntimeError("secret internal detail /var/task/buildlogs/builds.py")

    api.sfn.describe_execution = broken
    # WHEN a status is read
    response = api.call("GET", f"/builds/{build_id}")
    # THEN a plain JSON 500 without the exception or any path
    assert response.status == 500
    assert response.body["error"] == "internal_error"
    assert "secret" not in response.raw
    assert "buildlogs" not in response.raw


def test_the_openapi_document_describes_every_route(api: Api) -> None:
    response = api.call("GET", "/openapi.json")
    assert response.status == 200
    paths = response.body["paths"]
    assert set(paths) == {
        "/builds",
        "/builds/{build_id}",
        "/builds/{build_id}/logs",
        "/builds/{build_id}/logs/search",
        "/builds/{build_id}/logs.txt",
        "/builds/{build_id}/events",
        "/builds/{build_id}/cancel",
    }
    assert set(paths["/builds"]) == {"get", "post"}
    assert "202" in paths["/builds"]["post"]["responses"]
    assert "409" in paths["/builds"]["post"]["responses"]
    assert "422" not in json.dumps(response.body)
    logs_params = {p["name"]: p for p in paths["/builds/{build_id}/logs"]["get"]["parameters"]}
    assert logs_params["wait"]["schema"]["maximum"] == 20
    assert logs_params["limit"]["schema"]["maximum"] == 1000
