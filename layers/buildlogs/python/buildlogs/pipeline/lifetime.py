"""A sandbox's explicit lifetime and what iteration builds know about it, in Redis.

One record per sandbox (``sandbox:{<id>}:state``, see ``buildlogs.keys``):

- ``expires_at``: until when the sandbox is kept (epoch seconds): E2B's timeout, set at create and
  extended by each iteration's Provision (``set_timeout``);
- ``serving``: the last build that SUCCEEDED in it (its preview is the sandbox's dev server);
- ``server_pid`` / ``server_build``: the dev server now running, so the next Start stops it;
- ``install``: what the last successful Install ran against (its command and manifest hashes).

Beside it: ``sandbox:{<id>}:files`` (path → content hash of the project files on the sandbox's
disk, so Scaffold writes only what changed) and ``sandbox:{<id>}:lease`` (the one iteration
running in the sandbox). The keys live as long as the sandbox is kept plus the log TTL.

Kill rule: a sandbox is killed by Cleanup or the archiver only when no succeeded build serves
from it, or its keep-alive has lapsed (:func:`may_kill`). The record is bookkeeping: a Redis
outage never fails a build (the stages fall back to writing every file and running Install).
"""

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import PurePosixPath

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from buildlogs.keys import sandbox_files_key, sandbox_key, sandbox_lease_key

# A lease lasts as long as an execution may run (the state machine's timeout, EXECUTION_TIMEOUT_SECONDS,
# whose default this is): it never expires under a running iteration. A lost release does not block
# the sandbox that long: the API takes over a lease whose holder's execution is no longer RUNNING.
LEASE_SECONDS = 10_800

# Dependency manifests: a change to one of these (or to the install command) runs Install again.
MANIFEST_NAMES = frozenset(
    {
        "package.json",
        "package-lock.json",
        "npm-shrinkwrap.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "bun.lockb",
        "bun.lock",
        "pyproject.toml",
        "poetry.lock",
        "uv.lock",
        "Pipfile",
        "Pipfile.lock",
        "setup.py",
        "setup.cfg",
        "environment.yml",
        "Gemfile",
        "Gemfile.lock",
        "go.mod",
        "go.sum",
        "Cargo.toml",
        "Cargo.lock",
        "composer.json",
        "composer.lock",
    }
)

# Compare-and-set: take the lease over from a holder that is known to have ended.
_TAKE_OVER = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 1 end "
    "return 0"
)
# Compare-and-delete: release the lease only if this build holds it.
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"

RedisClient = Redis | RedisCluster


class SandboxField(StrEnum):
    """The fields of ``sandbox:{<id>}:state``: no other module spells one."""

    EXPIRES_AT = "expires_at"
    SERVING = "serving"
    SERVER_PID = "server_pid"
    SERVER_BUILD = "server_build"
    INSTALL = "install"
    KILLED = "killed"


@dataclass(frozen=True, slots=True)
class SandboxState:
    """What the record says of a sandbox (``known``: a record exists)."""

    sandbox_id: str
    known: bool
    expires_at: float | None = None
    serving: str | None = None
    server_pid: int | None = None
    server_build: str | None = None
    install: str | None = None
    killed: bool = False

    def alive(self, now: float | None = None) -> bool:
        """Kept and not killed: an iteration may reconnect to it."""
        moment = time.time() if now is None else now
        return self.known and not self.killed and self.expires_at is not None and self.expires_at > moment

    def served(self, now: float | None = None) -> bool:
        """A succeeded build still serves from it and its keep-alive has not lapsed."""
        return self.serving is not None and self.alive(now)


def iso_utc(epoch: float) -> str:
    """The one way ``sandbox_expires_at`` is written (the API's status and the Provision line)."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def is_manifest(path: str) -> bool:
    """Whether ``path`` is a dependency manifest (``requirements*.txt`` too)."""
    name = PurePosixPath(path).name
    return name in MANIFEST_NAMES or (name.startswith("requirements") and name.endswith(".txt"))


def install_fingerprint(install_command: str | None, files: Mapping[str, str]) -> dict[str, str]:
    """What an Install depends on: its command and each manifest's content hash (``{"": command, path: hash}``)."""
    manifests = {path: content_hash(text) for path, text in files.items() if is_manifest(path)}
    return {"": install_command or "", **dict(sorted(manifests.items()))}


def install_changes(recorded: str | None, current: Mapping[str, str]) -> list[str]:
    """Why Install must run: ``[]`` when ``current`` is what the last Install ran against."""
    if recorded is None:
        return ["no earlier install in this sandbox"]
    try:
        before = json.loads(recorded)
    except ValueError:
        return ["no earlier install in this sandbox"]
    if not isinstance(before, dict):
        return ["no earlier install in this sandbox"]
    reasons = []
    if before.get("", "") != current.get("", ""):
        reasons.append("the install command changed")
    paths = sorted((set(before) | set(current)) - {""})
    reasons += [f"{path} changed" for path in paths if before.get(path) != current.get(path)]
    return reasons


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


async def read_state(redis: RedisClient, sandbox_id: str) -> SandboxState:
    raw = await redis.hgetall(sandbox_key(sandbox_id))
    fields = {_text(k) or "": _text(v) for k, v in raw.items()}
    if not fields:
        return SandboxState(sandbox_id, known=False)
    expires, pid = fields.get(SandboxField.EXPIRES_AT), fields.get(SandboxField.SERVER_PID)
    return SandboxState(
        sandbox_id,
        known=True,
        expires_at=float(expires) if expires else None,
        serving=fields.get(SandboxField.SERVING) or None,
        server_pid=int(pid) if pid else None,
        server_build=fields.get(SandboxField.SERVER_BUILD) or None,
        install=fields.get(SandboxField.INSTALL) or None,
        killed=bool(fields.get(SandboxField.KILLED)),
    )


async def record_kept(redis: RedisClient, sandbox_id: str, expires_at: float, log_ttl_seconds: int) -> None:
    """The sandbox is kept until ``expires_at`` (created, or extended by an iteration)."""
    ttl = max(1, int(expires_at - time.time()) + log_ttl_seconds)
    await redis.hset(sandbox_key(sandbox_id), SandboxField.EXPIRES_AT, f"{expires_at:.3f}")
    for key in (sandbox_key(sandbox_id), sandbox_files_key(sandbox_id)):
        await redis.expire(key, ttl)


async def record_fields(redis: RedisClient, sandbox_id: str, fields: Mapping[SandboxField, str]) -> None:
    """Set record fields; the record keeps its TTL."""
    await redis.hset(sandbox_key(sandbox_id), mapping={str(name): value for name, value in fields.items()})


async def record_killed(redis: RedisClient, sandbox_id: str) -> None:
    """The sandbox is gone: no iteration may reconnect to it; what it held is forgotten."""
    await redis.hset(sandbox_key(sandbox_id), SandboxField.KILLED, "1")
    await redis.delete(sandbox_files_key(sandbox_id))
    await redis.hdel(sandbox_key(sandbox_id), SandboxField.SERVING, SandboxField.SERVER_PID)


async def file_hashes(redis: RedisClient, sandbox_id: str) -> dict[str, str] | None:
    """Path → content hash of the files on the sandbox's disk; ``None`` when nothing is recorded."""
    raw = await redis.hgetall(sandbox_files_key(sandbox_id))
    if not raw:
        return None
    return {_text(k) or "": _text(v) or "" for k, v in raw.items()}


async def record_files(
    redis: RedisClient, sandbox_id: str, written: Mapping[str, str], deleted: Iterable[str], *, replace: bool
) -> None:
    """Record files written (their texts) and deleted; ``replace``: ``written`` is every file there is."""
    key = sandbox_files_key(sandbox_id)
    pipe = redis.pipeline(transaction=False)
    if replace:
        pipe.delete(key)
    removed = list(deleted)
    if removed:
        pipe.hdel(key, *removed)
    if written:
        pipe.hset(key, mapping={path: content_hash(text) for path, text in written.items()})
    pipe.ttl(sandbox_key(sandbox_id))
    results = await pipe.execute()
    ttl = results[-1]
    if isinstance(ttl, int) and ttl > 0:
        await redis.expire(key, ttl)


async def forget_files(redis: RedisClient, sandbox_id: str, paths: Iterable[str] | None) -> None:
    """Forget the recorded hashes of ``paths`` (``None``: of every file) before the disk changes."""
    key = sandbox_files_key(sandbox_id)
    if paths is None:
        await redis.delete(key)
        return
    names = list(paths)
    if names:
        await redis.hdel(key, *names)


async def acquire_lease(
    redis: RedisClient, sandbox_id: str, build_id: str, ttl_seconds: int = LEASE_SECONDS
) -> str | None:
    """Take the sandbox's iteration lease for ``build_id``; ``None`` if taken, else the holder (``build_id``).

    Taking it again for the same build (an idempotent resubmit) succeeds.
    """
    key = sandbox_lease_key(sandbox_id)
    if await redis.set(key, build_id, nx=True, ex=ttl_seconds):
        return build_id
    holder = _text(await redis.get(key))
    return build_id if holder == build_id else None


async def take_over_lease(
    redis: RedisClient, sandbox_id: str, holder: str, build_id: str, ttl_seconds: int = LEASE_SECONDS
) -> bool:
    """Give the lease to ``build_id`` if ``holder`` still holds it (its run ended without releasing it)."""
    taken = await redis.eval(_TAKE_OVER, 1, sandbox_lease_key(sandbox_id), holder, build_id, str(ttl_seconds))
    return bool(taken)


async def lease_age(redis: RedisClient, sandbox_id: str, ttl_seconds: int = LEASE_SECONDS) -> float | None:
    """Seconds since the lease was taken (from its TTL); ``None`` without a lease."""
    left = await redis.ttl(sandbox_lease_key(sandbox_id))
    if not isinstance(left, int) or left < 0:
        return None
    return float(ttl_seconds - left)


async def lease_holder(redis: RedisClient, sandbox_id: str) -> str | None:
    return _text(await redis.get(sandbox_lease_key(sandbox_id)))


async def release_lease(redis: RedisClient, sandbox_id: str, build_id: str) -> bool:
    """Release the lease if ``build_id`` holds it (idempotent); whether it was released now."""
    released = await redis.eval(_RELEASE, 1, sandbox_lease_key(sandbox_id), build_id)
    return bool(released)


def gone_or_lapsed(state: SandboxState, now: float | None = None) -> bool:
    """The record positively says the sandbox is killed or its keep-alive has lapsed."""
    moment = time.time() if now is None else now
    return state.known and (state.killed or (state.expires_at is not None and state.expires_at <= moment))


async def may_kill(
    redis: RedisClient, sandbox_id: str, ending_build: str, now: float | None = None, *, iteration: bool = False
) -> tuple[bool, SandboxState]:
    """Whether Cleanup or the archiver of ``ending_build`` (a run that did not succeed) may kill the
    sandbox.

    A first build's: no other, succeeded build serves from it, or its keep-alive lapsed; unknown
    to Redis (no record): yes, as before iterations existed. An ``iteration``'s sandbox always
    serves the SUCCEEDED build it started from: only when the record positively says it is
    killed or lapsed (a missing record or field is no proof; E2B's own timeout reaps it).
    """
    state = await read_state(redis, sandbox_id)
    if iteration:
        return gone_or_lapsed(state, now), state
    return not (state.served(now) and state.serving != ending_build), state


__all__ = [
    "LEASE_SECONDS",
    "MANIFEST_NAMES",
    "SandboxField",
    "SandboxState",
    "acquire_lease",
    "content_hash",
    "file_hashes",
    "forget_files",
    "gone_or_lapsed",
    "install_changes",
    "install_fingerprint",
    "is_manifest",
    "iso_utc",
    "lease_age",
    "lease_holder",
    "may_kill",
    "read_state",
    "record_fields",
    "record_files",
    "record_kept",
    "record_killed",
    "release_lease",
    "take_over_lease",
]
