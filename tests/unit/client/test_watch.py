"""``buildlogs run --watch`` (issue 12): saved changes are debounced and sent as iteration builds of the
last succeeded build; ``submit --iterate-from`` sends the project as an iteration request."""

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from buildlogs.client.cli import LocalRun, main
from buildlogs.client.project import iteration_request, load_spec
from buildlogs.client.watch import ProjectWatcher
from buildlogs.pipeline.models import BuildSpec
from tests.support.fake_api import API, BUILD, FakeApi, end

STACK_URL = "http://127.0.0.1:9/"


class FakeClock:
    """A clock that only moves when the watcher sleeps (no real waiting)."""

    def __init__(self, script: Callable[[float], None] | None = None) -> None:
        self.now = 0.0
        self.script = script

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.script is not None:
            self.script(self.now)

    def __call__(self) -> float:
        return self.now


def test_a_change_is_reported_once_it_has_stayed_the_same_for_the_quiet_period() -> None:
    # GIVEN a project that is saved in three writes, 0.1 s apart
    versions = iter(["v1", "v1", "v2-partial", "v2", "v2", "v2", "v2", "v2", "v2"])
    clock = FakeClock()
    watcher = ProjectWatcher(lambda: next(versions), interval=0.1, quiet=0.3, sleep=clock.sleep, clock=clock)
    # WHEN the watcher waits for a change of v1 THEN it reports the last write, once it stayed for 0.3 s
    assert watcher.next_change("v1") == "v2"
    assert clock.now == pytest.approx(0.8)


def test_an_unreadable_project_is_waited_out_and_reported_once() -> None:
    # GIVEN a buildspec that is half-written for a while
    values: Iterator[str | Exception] = iter([ValueError("bad json"), ValueError("bad json"), "v2", "v2", "v2"])
    errors: list[str] = []

    def load() -> str:
        value = next(values)
        if isinstance(value, Exception):
            raise value
        return value

    clock = FakeClock()
    watcher = ProjectWatcher(
        load, on_error=lambda e: errors.append(str(e)), interval=0.1, quiet=0.1, sleep=clock.sleep, clock=clock
    )
    # THEN the change is the readable one, the error said once
    assert watcher.next_change("v1") == "v2"
    assert errors == ["bad json"]


def test_an_iteration_request_carries_only_what_changed() -> None:
    earlier = BuildSpec(files={"a.py": "1", "b.py": "2", "c.py": "3"}, start="run", port=8000, build="make")
    current = BuildSpec(files={"a.py": "1", "b.py": "22", "d.py": "4"}, start="run", port=8000, build="make all")
    request = iteration_request(earlier, current, "b-1")
    assert request is not None
    assert (request.iterate_from, request.files, request.deleted) == ("b-1", {"b.py": "22", "d.py": "4"}, ["c.py"])
    assert request.model_fields_set == {"iterate_from", "files", "deleted", "build"}
    assert iteration_request(earlier, earlier, "b-1") is None


@dataclass
class Stack:
    """LocalStack's shape: every build succeeds at once; records what was submitted."""

    api: FakeApi
    submitted: list[BuildSpec] = field(default_factory=list)
    api_url: str = STACK_URL

    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, spec: BuildSpec) -> str:
        self.submitted.append(spec)
        return BUILD

    def wait(self, build_id: str) -> str:
        return "SUCCEEDED"

    def cancel(self, build_id: str) -> None:
        raise AssertionError("nothing is cancelled here")

    def archive_path(self, build_id: str) -> Path:
        return Path(".buildlogs/archive") / build_id


def project(root: Path) -> Path:
    (root / "public").mkdir(parents=True)
    (root / "buildspec.json").write_text(json.dumps({"start": "python3 server.py", "port": 8080}))
    (root / "public" / "index.html").write_text("v1")
    (root / "notes.txt").write_text("n")
    return root


def test_run_watch_sends_each_saved_change_as_an_iteration_of_the_last_success(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    root = project(tmp_path / "app")
    api = FakeApi(entries=[end(1, "SUCCEEDED")])
    stack = Stack(api)

    # GIVEN edits made while the watcher waits: a page changed and a file deleted, then Ctrl-C
    def script(now: float) -> None:
        if now == pytest.approx(0.1):
            (root / "public" / "index.html").write_text("v2")
            (root / "notes.txt").unlink()
        if now > 5:
            raise KeyboardInterrupt

    clock = FakeClock(script)

    def watcher(load: Callable[[], Any], **options: Any) -> ProjectWatcher[Any]:
        return ProjectWatcher(load, interval=0.1, quiet=0.2, sleep=clock.sleep, clock=clock, **options)

    local = LocalRun(load_spec, lambda **options: options, lambda _config: stack, watcher)
    # WHEN `buildlogs run --watch PROJECT_DIR` runs until Ctrl-C
    code = main(
        ["run", "--watch", str(root)], transport=api.transport(), out=io.StringIO(), err=io.StringIO(), local=local
    )
    # THEN the first build was the whole project, the second an iteration of it with only the change
    assert code == 0
    first, second = stack.submitted
    assert first.iterate_from is None
    assert set(first.files) == {"public/index.html", "notes.txt"}
    assert (second.iterate_from, second.files, second.deleted) == (BUILD, {"public/index.html": "v2"}, ["notes.txt"])


def test_submit_iterate_from_sends_the_project_as_an_iteration_request(tmp_path: Path) -> None:
    root = project(tmp_path / "app")
    api = FakeApi()
    out = io.StringIO()
    # WHEN a project is submitted as an iteration of an earlier build
    code = main(["submit", "--iterate-from", "b-earlier", str(root), "--api", API], transport=api.transport(), out=out)
    # THEN the body names the earlier build and carries the project (the API keeps what did not change)
    assert code == 0
    (body,) = api.submitted
    assert body["iterate_from"] == "b-earlier"
    assert body["files"] == {"public/index.html": "v1", "notes.txt": "n"}
    assert "build_id" not in body
    # AND says the files are the whole project, so the API deletes the earlier files missing here
    assert body["complete_files"] is True
