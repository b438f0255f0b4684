"""Sandbox runtimes behind one protocol: ``E2BSandboxRuntime`` (AWS) and ``LocalSandboxRuntime`` (local runs).

``create_runtime`` picks one and ``kill_sandbox`` reaps one by id; the protocol (``SandboxRuntime``) and
the types every runtime shares live in ``buildlogs.pipeline.sandbox.protocol`` and are re-exported here.

Importing this package never imports e2b: ``buildlogs.pipeline.sandbox.e2b`` loads only when an E2B runtime
is created, so the archiver, the API and local runs stay light.
"""

from buildlogs.observability import logger
from buildlogs.pipeline.sandbox.local import LocalSandboxRuntime, is_local_sandbox_id
from buildlogs.pipeline.sandbox.protocol import (
    TIMEOUT_EXIT_CODE,
    BackgroundProcess,
    CommandResult,
    OutputCallback,
    SandboxRuntime,
)
from buildlogs.settings import Settings, get_settings

__all__ = [
    "TIMEOUT_EXIT_CODE",
    "BackgroundProcess",
    "CommandResult",
    "LocalSandboxRuntime",
    "OutputCallback",
    "SandboxRuntime",
    "create_runtime",
    "kill_sandbox",
]


def create_runtime(
    settings: Settings | None = None,
    *,
    sandbox_id: str | None = None,
    template: str = "base",
    build_id: str | None = None,
) -> SandboxRuntime:
    """The runtime of ``SANDBOX_RUNTIME`` (a ``local-…`` sandbox id is always local); call ``start()`` next."""
    settings = settings or get_settings()
    if (sandbox_id is not None and is_local_sandbox_id(sandbox_id)) or (
        sandbox_id is None and settings.sandbox_runtime == "local"
    ):
        return LocalSandboxRuntime(sandbox_id=sandbox_id, build_id=build_id)
    from buildlogs.pipeline.sandbox.e2b import E2BSandboxRuntime, resolve_api_key

    metadata = {"build_id": build_id} if build_id else None
    return E2BSandboxRuntime(
        sandbox_id,
        template=template,
        api_key=resolve_api_key(settings),
        metadata=metadata,
        lifetime_seconds=settings.sandbox_keep_alive_seconds,
    )


async def kill_sandbox(sandbox_id: str, settings: Settings | None = None) -> None:
    """Best effort: kill the sandbox ``sandbox_id`` (the archiver reaps TIMED_OUT/ABORTED runs). Never raises."""
    settings = settings or get_settings()
    try:
        if is_local_sandbox_id(sandbox_id):
            await LocalSandboxRuntime(sandbox_id=sandbox_id).kill()
        elif settings.sandbox_runtime == "e2b":
            from buildlogs.pipeline.sandbox.e2b import kill_e2b_sandbox

            await kill_e2b_sandbox(sandbox_id, settings)
        else:
            logger.warning("not killing sandbox: SANDBOX_RUNTIME is local", extra={"sandbox_id": sandbox_id[:128]})
            return
    except Exception as exc:  # best effort by contract: reaping must never fail the caller
        logger.warning("could not kill sandbox", extra={"sandbox_id": sandbox_id[:128], "error": repr(exc)[:500]})
        return
    logger.info("sandbox killed", extra={"sandbox_id": sandbox_id})
