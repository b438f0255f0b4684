"""What the fake envd cannot show (debug mode skips the control plane): create, connect by id, kill.

A recording double of ``AsyncSandbox`` stands in for the SDK's control-plane calls.
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from e2b.exceptions import NotFoundException, SandboxException, SandboxNotFoundException

import buildlogs.pipeline.sandbox.e2b as e2b_adapter
from buildlogs.errors import SandboxGone, SandboxUnavailable
from buildlogs.pipeline.sandbox import create_runtime, kill_sandbox
from buildlogs.settings import Settings

SETTINGS = Settings(sandbox_runtime="e2b", e2b_api_key="e2b_test_key_123")


@dataclass
class _Result:
    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""


class _Handle:
    pid = 1
    exit_code = 0
    stdout = ""
    stderr = ""

    async def wait(self) -> _Result:
        return _Result()

    async def disconnect(self) -> None:
        return None


@dataclass
class _Commands:
    ran: list[dict[str, Any]] = field(default_factory=list)

    async def run(self, cmd: str, **kwargs: Any) -> _Handle:
        self.ran.append({"cmd": cmd, **kwargs})
        return _Handle()


class _KillVariant:
    """Like the SDK: ``AsyncSandbox.kill(id)`` on the class, ``sandbox.kill()`` on an instance."""

    def __get__(self, obj: "RecordingSandbox | None", cls: type["RecordingSandbox"]) -> Any:
        if obj is None:

            async def kill_by_id(sandbox_id: str, **opts: Any) -> bool:
                cls.calls.append(("kill", sandbox_id, opts))
                if cls.fail_kill:
                    raise SandboxException("control plane down")
                return True

            return kill_by_id

        async def kill_instance(**opts: Any) -> bool:
            cls.calls.append(("kill", obj.sandbox_id, opts))
            return True

        return kill_instance


class RecordingSandbox:
    calls: ClassVar[list[tuple[str, Any, dict[str, Any]]]] = []
    instances: ClassVar[list["RecordingSandbox"]] = []  # every sandbox handed out, newest last
    fail_connect: Exception | None = None
    fail_set_timeout: Exception | None = None
    fail_kill = False
    kill = _KillVariant()

    def __init__(self, sandbox_id: str) -> None:
        self.sandbox_id = sandbox_id
        self.commands = _Commands()
        self.connection_config = type("Config", (), {"debug": False})()
        RecordingSandbox.instances.append(self)

    def get_host(self, port: int) -> str:
        return f"{port}-{self.sandbox_id}.e2b.app"

    @classmethod
    async def create(cls, **kwargs: Any) -> "RecordingSandbox":
        cls.calls.append(("create", None, kwargs))
        return cls("sbx-new")

    @classmethod
    async def connect(cls, sandbox_id: str, **opts: Any) -> "RecordingSandbox":
        cls.calls.append(("connect", sandbox_id, opts))
        if cls.fail_connect is not None:
            raise cls.fail_connect
        return cls(sandbox_id)

    async def set_timeout(self, timeout: int, **opts: Any) -> None:
        RecordingSandbox.calls.append(("set_timeout", self.sandbox_id, {"timeout": timeout, **opts}))
        if RecordingSandbox.fail_set_timeout is not None:
            raise RecordingSandbox.fail_set_timeout


@pytest.fixture(autouse=True)
def double(monkeypatch: pytest.MonkeyPatch) -> type[RecordingSandbox]:
    RecordingSandbox.calls = []
    RecordingSandbox.instances = []
    RecordingSandbox.fail_connect = RecordingSandbox.fail_set_timeout = None
    RecordingSandbox.fail_kill = False
    monkeypatch.setattr(e2b_adapter, "AsyncSandbox", RecordingSandbox)
    return RecordingSandbox


async def test_provision_creates_the_sandbox_with_template_lifetime_metadata_and_key() -> None:
    # WHEN provision's runtime starts
    runtime = create_runtime(SETTINGS, template="node-20", build_id="b-42")
    await runtime.start()
    # THEN the sandbox was created once, with the build id in its metadata and the key from settings
    assert RecordingSandbox.calls == [
        (
            "create",
            None,
            {
                "template": "node-20",
                "timeout": e2b_adapter.SANDBOX_LIFETIME_SECONDS,
                "metadata": {"build_id": "b-42"},
                "api_key": "e2b_test_key_123",
            },
        )
    ]
    assert runtime.sandbox_id == "sbx-new"
    # and its work directory was made
    [sandbox] = RecordingSandbox.instances
    assert sandbox.commands.ran[0]["cmd"] == "mkdir -p /home/user/app"


async def test_later_stages_reconnect_by_id_and_preview_through_get_host() -> None:
    runtime = create_runtime(SETTINGS, sandbox_id="sbx-9")
    await runtime.start()
    assert RecordingSandbox.calls == [("connect", "sbx-9", {"api_key": "e2b_test_key_123"})]
    assert runtime.preview_url(5173) == "https://5173-sbx-9.e2b.app"
    # commands are forwarded with their callbacks, cwd and env
    out: list[str] = []
    await runtime.run_command("npm ci", 30, on_stdout=out.append, envs={"A": "1"})
    [sandbox] = RecordingSandbox.instances
    ran = sandbox.commands.ran[-1]
    assert ran["cmd"] == "npm ci"
    assert (ran["background"], ran["cwd"], ran["envs"], ran["on_stdout"]) == (
        True,
        "/home/user/app",
        {"A": "1"},
        out.append,
    )


async def test_cleanup_kills_the_sandbox_it_connected_to() -> None:
    runtime = create_runtime(SETTINGS, sandbox_id="sbx-9")
    await runtime.start()
    await runtime.kill()
    assert RecordingSandbox.calls[-1] == ("kill", "sbx-9", {})


async def test_kill_sandbox_kills_by_id_without_connecting() -> None:
    await kill_sandbox("sbx-7", SETTINGS)
    assert RecordingSandbox.calls == [("kill", "sbx-7", {"api_key": "e2b_test_key_123"})]


async def test_kill_sandbox_is_best_effort() -> None:
    RecordingSandbox.fail_kill = True
    await kill_sandbox("sbx-7", SETTINGS)  # THEN no exception reaches the archiver
    assert RecordingSandbox.calls == [("kill", "sbx-7", {"api_key": "e2b_test_key_123"})]


async def test_a_sandbox_that_cannot_be_reached_is_sandbox_unavailable() -> None:
    RecordingSandbox.fail_connect = SandboxException("control plane busy")
    runtime = create_runtime(SETTINGS, sandbox_id="sbx-9")
    with pytest.raises(SandboxUnavailable, match="control plane busy"):
        await runtime.start()


async def test_a_sandbox_e2b_does_not_know_is_gone_not_unavailable() -> None:
    # GIVEN a sandbox E2B already killed (its timeout ran out): connect answers not found
    RecordingSandbox.fail_connect = SandboxNotFoundException("Sandbox sbx-gone not found")
    runtime = create_runtime(SETTINGS, sandbox_id="sbx-gone")
    # THEN the error is SandboxGone (never retried), not SandboxUnavailable (retried 3 times)
    with pytest.raises(SandboxGone, match="sbx-gone no longer exists"):
        await runtime.start()


async def test_extend_of_a_sandbox_gone_meanwhile_is_sandbox_gone() -> None:
    # GIVEN a reconnected sandbox that E2B reaps before set_timeout
    RecordingSandbox.fail_set_timeout = NotFoundException("sandbox sbx-9 not found")
    runtime = create_runtime(SETTINGS, sandbox_id="sbx-9")
    await runtime.start()
    # WHEN its life is extended THEN SandboxGone, after one set_timeout with the keep-alive
    with pytest.raises(SandboxGone):
        await runtime.extend(900)
    assert RecordingSandbox.calls[-1] == ("set_timeout", "sbx-9", {"timeout": 900})


async def test_local_sandbox_ids_never_reach_e2b() -> None:
    await kill_sandbox("local-b-1-deadbeef", SETTINGS)
    assert RecordingSandbox.calls == []
