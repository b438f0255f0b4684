"""The ``buildlogs`` command line: run, submit, tail, status, list, cancel, view (click).

The commands only: HTTP, signing and retries are in :mod:`buildlogs.client.http`, following a
log in :mod:`buildlogs.client.follow`, rendering in :mod:`buildlogs.client.console`, and ``run``'s
local stack in ``buildlogs.client.local_run`` (imported when ``run`` runs), ``view``'s proxy in
:mod:`buildlogs.client.view`.

The API root comes from ``--api`` (before or after the command) or ``BUILDLOGS_API_URL``; ``run``
takes none (it serves its own local API).
Exit codes: 0 SUCCEEDED, 1 FAILED, 2 TIMED_OUT or ABORTED, 3 an API or usage error, 130 Ctrl-C.
"""

import importlib
import json
import sys
import threading
import webbrowser
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import click
import httpx
from rich.console import Console
from rich.table import Table
from rich.text import Text

from buildlogs.client.console import LogView, build_summary, format_duration, is_tty, make_console, total_ms
from buildlogs.client.follow import (
    EXIT_API_ERROR,
    EXIT_CODES,
    EXIT_INTERRUPTED,
    Follower,
    cursor_since,
    exit_code_for,
)
from buildlogs.client.http import ApiClient, ApiError, RetryPolicy
from buildlogs.client.view import serve_view
from buildlogs.client.watch import ProjectWatcher
from buildlogs.keys import validate_build_id
from buildlogs.pipeline.stages import STAGES
from buildlogs.settings import get_settings
from buildlogs.statuses import ExecutionStatus

DEFAULT_PROJECT = Path("examples/hello-web")
DRAIN_SECONDS = 60.0  # how long `run` waits for its follower to reach the end entry once the build ended

_RESULT_CODES = "0 SUCCEEDED, 1 FAILED, 2 TIMED_OUT/ABORTED"
EXIT_HELP = f"{_RESULT_CODES}, 3 error, 130 Ctrl-C"


class Stack(Protocol):
    """What ``run`` needs of ``buildlogs.client.local_run.LocalStack`` (entered)."""

    api_url: str

    def submit(self, spec: Any) -> str: ...
    def wait(self, build_id: str) -> str: ...
    def cancel(self, build_id: str) -> None: ...
    def archive_path(self, build_id: str) -> Path: ...


@dataclass(frozen=True, slots=True)
class LocalRun:
    """``run``'s collaborators: ``load_spec(path)``, ``config(sandbox=, api_port=)``, ``stack(config)``."""

    load_spec: Callable[[Path], Any]
    config: Callable[..., Any]
    stack: Callable[[Any], AbstractContextManager[Stack]]
    watcher: Callable[..., ProjectWatcher[Any]] = ProjectWatcher  # run --watch: saved changes (tests: a script)


def local_run() -> LocalRun:
    """The real local stack (imported only when ``run`` runs: it loads moto, the API, the handlers)."""
    project = importlib.import_module("buildlogs.client.project")
    stack = importlib.import_module("buildlogs.client.local_run")
    return LocalRun(project.load_spec, stack.LocalRunConfig, stack.LocalStack)


@dataclass
class Runtime:
    """What the commands share: consoles, the API root, and the injectable parts (tests)."""

    out: Console
    err: Console
    transport: httpx.BaseTransport | None = None
    retry: RetryPolicy | None = None
    local: LocalRun | None = None
    api: str | None = None
    clients: list[ApiClient] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)  # set: `view` stops serving (tests)

    def client(self, view: LogView | None = None, api_url: str | None = None) -> ApiClient:
        try:
            url = api_url or self.api or get_settings().api_url
        except ValueError as exc:  # a bad variable in the environment: the error names it
            raise ApiError(0, f"bad settings: {exc}") from None
        notice = view.notice if view is not None else self.notice

        def outage(exc: ApiError) -> None:
            notice(f"buildlogs: {exc}; retrying (the log resumes where it stopped)")

        client = ApiClient(url, transport=self.transport, retry=self.retry, on_outage=outage)
        self.clients.append(client)
        return client

    def view(self, *, timestamps: bool = False, json_lines: bool = False) -> LogView:
        return LogView(self.out, self.err, timestamps=timestamps, json_lines=json_lines)

    def notice(self, text: str, style: str = "dim") -> None:
        self.err.print(Text(text, style=style), soft_wrap=True)

    def error(self, text: str) -> None:
        self.err.print(Text(f"buildlogs: {text}"), soft_wrap=True)

    def close(self) -> None:
        for client in self.clients:
            client.close()


# -- click plumbing: --api anywhere, exit codes in the help, usage errors exit 3 ------------------


def _remember_api(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.ensure_object(Runtime).api = value  # the one after the command wins


def _api_option() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--api",
        metavar="URL",
        expose_value=False,
        callback=_remember_api,
        help="The API root URL (default: $BUILDLOGS_API_URL). Requests to a deployed API are SigV4-signed.",
    )


def _view_options(function: Callable[..., Any]) -> Callable[..., Any]:
    function = click.option("--json", "json_lines", is_flag=True, help="NDJSON entries on stdout, nothing else.")(
        function
    )
    return click.option("--timestamps", is_flag=True, help="Show each line's time.")(function)


class _Command(click.Command):
    """A command whose help ends with its exit codes."""

    def __init__(self, *args: Any, exit_codes: str = EXIT_HELP, **kwargs: Any) -> None:
        self.exit_codes = exit_codes
        kwargs["epilog"] = f"Exit codes: {exit_codes}."
        super().__init__(*args, **kwargs)


class _Group(click.Group):
    """The top level: lists every command with its exit codes."""

    command_class = _Command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        commands = [(name, self.get_command(ctx, name)) for name in self.list_commands(ctx)]
        width = max(len(name) for name, _ in commands)
        with formatter.section("Commands (exit codes)"):
            for name, command in commands:
                if command is None or command.hidden:
                    continue
                codes = getattr(command, "exit_codes", EXIT_HELP)
                formatter.write(f"{'':{formatter.current_indent}}{name:<{width}}  {command.get_short_help_str(200)}\n")
                formatter.write(f"{'':{formatter.current_indent}}{'':<{width}}  exits {codes}\n")

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # in the order they are defined, not sorted


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=(
        "Exit codes: 0 SUCCEEDED, 1 FAILED, 2 TIMED_OUT or ABORTED, 3 an API error (unknown build, rejected "
        "request, an outage past the retries) or a usage error, 130 interrupted (Ctrl-C). The API root comes "
        "from --api (before or after the command) or BUILDLOGS_API_URL. Output is plain (no colour, no live "
        "status line) off a terminal or with NO_COLOR."
    ),
)
@_api_option()
@click.version_option(package_name="buildlogs", prog_name="buildlogs", message="%(prog)s %(version)s")
def cli() -> None:
    """Start builds and follow their logs live."""


# -- run ------------------------------------------------------------------------------------------


@cli.command(exit_codes=EXIT_HELP)
@click.argument("path", required=False, default=str(DEFAULT_PROJECT), type=click.Path(path_type=Path))
@click.option("--sandbox", type=click.Choice(["local", "e2b"]), default="local", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Port of the local API (0: any free port).")
@click.option(
    "--watch",
    is_flag=True,
    help="Then keep the preview and the API up and rebuild each saved change as an iteration build, until Ctrl-C.",
)
@_view_options
@click.pass_obj
def run(rt: Runtime, path: Path, sandbox: str, port: int, watch: bool, timestamps: bool, json_lines: bool) -> int:
    """Build PROJECT_DIR or SPEC.json on a local stack, following its log live.

    The local stack runs the real state machine (moto), the stage handlers with a local or E2B
    sandbox (E2B_API_KEY), Redis and the REST API on 127.0.0.1, which `buildlogs tail` can follow
    from another terminal. Ctrl-C cancels the build (its partial log is archived) and exits 130.
    """
    if rt.api:  # `buildlogs --api URL run`: the group's option, meant for the other commands
        rt.notice(f"buildlogs: run ignores --api {rt.api}: it serves and follows its own local API")
    if sandbox == "e2b":
        try:
            has_key = bool(get_settings().e2b_api_key)
        except ValueError as exc:  # a bad variable in the environment: the error names it
            rt.error(f"bad settings: {exc}")
            return EXIT_API_ERROR
        if not has_key:
            rt.error("--sandbox e2b needs an E2B API key: set E2B_API_KEY (or use --sandbox local)")
            return EXIT_API_ERROR
    try:
        local = rt.local or local_run()
    except ImportError as exc:
        rt.error(f"the local run is not available: {exc}")
        return EXIT_API_ERROR
    try:
        spec = local.load_spec(path)
    except (ValueError, OSError) as exc:
        rt.error(f"cannot build {path}: {exc}")
        return EXIT_API_ERROR
    view = rt.view(timestamps=timestamps, json_lines=json_lines)
    with ExitStack() as exits:
        try:
            stack = exits.enter_context(local.stack(local.config(sandbox=sandbox, api_port=port)))
        except Exception as exc:  # Redis, moto, a port in use: say what, no traceback
            rt.error(f"cannot start the local stack: {_describe(exc)}")
            return EXIT_API_ERROR
        try:
            build_id = stack.submit(spec)
        except Exception as exc:  # a build id whose log exists, Redis down, the API refusing: no traceback
            rt.error(f"cannot submit the build: {_describe(exc)}")
            return EXIT_API_ERROR
        code, status, interrupted = _follow_local(rt, view, stack, build_id)
        if not watch or interrupted or status is None:
            return code
        return _watch(rt, local, view, stack, path, spec, build_id, status)


def _follow_local(rt: Runtime, view: LogView, stack: Stack, build_id: str) -> tuple[int, str | None, bool]:
    """Follow a build of the local stack to its end (Ctrl-C cancels it): ``(exit code, status, interrupted)``."""
    url = stack.api_url
    view.notice(f"build {build_id} on the local API {url}", style="bold")
    view.notice(f"follow from another terminal: buildlogs tail {build_id} --api {url}")
    view.notice(f"or in a browser: {url}builds/{build_id}/view")
    follower = Follower(rt.client(view, url), build_id)
    thread = _FollowThread(follower, view)
    interrupted = False
    try:
        with view:
            thread.start()
            try:
                status = stack.wait(build_id)
            except KeyboardInterrupt:
                interrupted = True
                view.notice("interrupted: cancelling the build (Ctrl-C again to quit at once)", style="yellow")
                stack.cancel(build_id)
                status = stack.wait(build_id)  # the archiver runs: the partial log is archived
            thread.join(DRAIN_SECONDS)  # the end entry is written: the follower drains to it
    except Exception as exc:  # the stack failed under the build (Redis, moto, a timeout): no traceback
        rt.error(f"waiting for build {build_id} failed: {_describe(exc)}")
        return EXIT_API_ERROR, None, False
    finally:
        follower.stop()  # a second Ctrl-C: the follower sends no further request
    if thread.error is not None:
        view.notice(f"buildlogs: the log could not be followed: {thread.error}", style="red")
    elif thread.is_alive():
        view.notice(f"buildlogs: the log did not reach its end within {DRAIN_SECONDS:.0f} s", style="red")
    archive = stack.archive_path(build_id)
    _summarise(rt, view, follower, status, lines=follower.count, archive=str(archive))
    return (EXIT_INTERRUPTED if interrupted else exit_code_for(status)), status, interrupted


def _watch(
    rt: Runtime, local: LocalRun, view: LogView, stack: Stack, path: Path, spec: Any, build_id: str, status: str
) -> int:
    """``run --watch``: each saved change of PATH is an iteration build of the last succeeded build (a
    fresh build while none succeeded), followed like the first, until Ctrl-C."""
    from buildlogs.client.project import iteration_request

    base = (spec, build_id) if status == ExecutionStatus.SUCCEEDED else None
    code = exit_code_for(status)
    watcher = local.watcher(lambda: local.load_spec(path), on_error=lambda exc: rt.error(f"cannot build {path}: {exc}"))
    current = spec
    try:
        while True:
            view.notice(f"watching {path} for changes (Ctrl-C to stop)", style="bold")
            current = watcher.next_change(current)
            # No success yet: a fresh build of the whole project (without a client-chosen id, now taken).
            fresh = current.model_copy(update={"build_id": None}) if hasattr(current, "model_copy") else current
            request = fresh if base is None else iteration_request(base[0], current, base[1])
            if request is None:
                continue
            try:
                new_id = stack.submit(request)
            except Exception as exc:  # the API refusing (409 while another iteration runs, ...): keep watching
                rt.error(f"cannot submit the build: {_describe(exc)}")
                continue
            code, new_status, interrupted = _follow_local(rt, view, stack, new_id)
            if interrupted:
                return code
            if new_status == ExecutionStatus.SUCCEEDED:
                base = (current, new_id)
    except KeyboardInterrupt:
        view.notice("stopped watching", style="yellow")
        return code


def _describe(exc: BaseException) -> str:
    """``Type: message`` of an error, for one line on stderr."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _FollowThread(threading.Thread):
    """``run``'s follower: renders the log while the main thread waits for the build."""

    def __init__(self, follower: Follower, view: LogView) -> None:
        super().__init__(name=f"follow-{follower.build_id}", daemon=True)
        self.follower, self.view = follower, view
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            for page in self.follower.pages():
                self.view.show_page(page)
        except Exception as exc:  # reported by the main thread, which owns the outcome
            self.error = exc


# -- submit, tail ---------------------------------------------------------------------------------


def _read_spec(rt: Runtime, path: Path) -> dict[str, Any]:
    """A BuildSpec from SPEC.json (sent as it is: the API validates it) or a PROJECT_DIR."""
    if path.is_dir():
        local = rt.local or local_run()
        spec = local.load_spec(path)
        return dict(spec.model_dump(mode="json", exclude_none=True)) if hasattr(spec, "model_dump") else dict(spec)
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("a BuildSpec is a JSON object")
    return data


@cli.command(exit_codes="0 submitted (--follow: as tail), 3 error, 130 Ctrl-C")
@click.argument("spec", type=click.Path(exists=True, path_type=Path), metavar="SPEC.json|PROJECT_DIR")
@click.option("--follow", "-f", is_flag=True, help="Then follow its log and exit with its result.")
@click.option(
    "--iterate-from",
    metavar="BUILD_ID",
    help="An iteration build in that SUCCEEDED build's sandbox: only what differs is written, "
    "Install runs only if a manifest changed.",
)
@_view_options
@_api_option()
@click.pass_obj
def submit(rt: Runtime, spec: Path, follow: bool, iterate_from: str | None, timestamps: bool, json_lines: bool) -> int:
    """Start a build (POST /builds); prints its id and URLs."""
    try:
        body = _read_spec(rt, spec)
    except (OSError, ValueError, ImportError) as exc:
        rt.error(f"cannot read {spec}: {exc}")
        return EXIT_API_ERROR
    if iterate_from:  # the whole project: the API keeps what did not change and deletes what is gone
        body = {
            **{k: v for k, v in body.items() if k != "build_id"},
            "iterate_from": iterate_from,
            "complete_files": True,
        }
    view = rt.view(timestamps=timestamps, json_lines=json_lines)
    client = rt.client(view)
    result = client.submit(body)
    build_id = str(result["build_id"])
    if json_lines and not follow:
        view.out.file.write(json.dumps(result) + "\n")
        return 0
    say = view.notice if json_lines else (lambda text, style="": view.out.print(text, soft_wrap=True))
    say(build_id, "")
    say(f"status: {client.api_url}{result['status_url']}", "")
    say(f"logs:   {client.api_url}{result['logs_url']}", "")
    if not follow:
        return 0
    return _follow(rt, view, Follower(client, build_id))


def _since(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return cursor_since(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command(exit_codes=EXIT_HELP)
@click.argument("build_id")
@click.option("--phase", type=click.Choice([stage.name for stage in STAGES]), help="Only this stage's lines.")
@click.option("--source", type=click.Choice(["stdout", "stderr", "system"]), help="Only this source's lines.")
@click.option(
    "--since", callback=_since, metavar="DURATION|ID", help="Start 10m (45s, 1h30m...) ago, or after this entry id."
)
@_view_options
@_api_option()
@click.pass_obj
def tail(
    rt: Runtime,
    build_id: str,
    phase: str | None,
    source: str | None,
    since: str | None,
    timestamps: bool,
    json_lines: bool,
) -> int:
    """Follow a build's log until it ends; exit with its result."""
    view = rt.view(timestamps=timestamps, json_lines=json_lines)
    cursor = since or "0-0"
    return _follow(rt, view, Follower(rt.client(view), build_id, after=cursor, phase=phase, source=source))


def _follow(rt: Runtime, view: LogView, follower: Follower) -> int:
    """Print the log until it ends, then the summary; the build's exit code."""
    with view:
        for page in follower.pages():
            view.show_page(page)
    filtered = follower.phase is not None or follower.source is not None or follower.after != "0-0"
    return _summarise(rt, view, follower, follower.status, lines=None if filtered else follower.count)


def _summarise(
    rt: Runtime,
    view: LogView,
    follower: Follower,
    status: str | None,
    *,
    lines: int | None = None,
    archive: str | None = None,
) -> int:
    """The summary table (GET /builds/{id}) after the log; under --json only the archive's location,
    on stderr. Returns the exit code of ``status`` (the end entry's), else of the API's status."""
    if view.json_lines and status is not None:
        if archive:
            view.notice(f"archive: {archive}")
        return exit_code_for(status)
    try:
        body = follower.client.status(follower.build_id)
    except ApiError as exc:
        if status is None:
            raise
        view.notice(f"buildlogs: no summary: {exc}")
        return exit_code_for(status)
    status = status or str(body.get("status") or "")
    if view.json_lines:
        if archive:
            view.notice(f"archive: {archive}")
    else:
        view.out.print(build_summary({**body, "status": status}, lines=lines, archive=archive), crop=False)
    return exit_code_for(status)


# -- status, list, cancel -------------------------------------------------------------------------


@cli.command(exit_codes="0 SUCCEEDED or running, 1 FAILED, 2 TIMED_OUT/ABORTED, 3 error")
@click.argument("build_id")
@click.option("--json", "json_out", is_flag=True, help="The API's JSON answer.")
@_api_option()
@click.pass_obj
def status(rt: Runtime, build_id: str, json_out: bool) -> int:
    """A build's status, stages, preview URL and archive."""
    body = rt.client().status(build_id)
    if json_out:
        rt.out.file.write(json.dumps(body) + "\n")
    else:
        rt.out.print(build_summary(body), crop=False)
    return EXIT_CODES.get(str(body.get("status")), 0)  # PENDING, RUNNING: 0


@cli.command("list", exit_codes="0 listed, 3 error")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--status", "status_filter", type=click.Choice(list(ExecutionStatus)), help="Only builds in this status.")
@click.option("--json", "json_out", is_flag=True, help="The API's JSON answer.")
@_api_option()
@click.pass_obj
def list_builds(rt: Runtime, limit: int, status_filter: str | None, json_out: bool) -> int:
    """Recent builds, newest first."""
    body = rt.client().builds(limit=limit, status=status_filter)
    if json_out:
        rt.out.file.write(json.dumps(body) + "\n")
        return 0
    rows = [
        (
            str(build.get("build_id")),
            str(build.get("status")),
            str(build.get("started_at") or "-"),
            format_duration(total_ms(build)) if build.get("stopped_at") else "-",
        )
        for build in body.get("builds") or []
    ]
    if not rows:
        rt.notice("no builds yet")
    elif is_tty(rt.out):
        table = Table("build", "status", "started", "time", box=None, pad_edge=False)
        table.columns[0].no_wrap = True  # an id stays whole, to copy
        for row in rows:
            table.add_row(*row)
        rt.out.print(table)
    else:  # piped: one tab-separated line per build, every value whole (`cut -f1` gives the ids)
        rt.out.file.write("".join("\t".join(row) + "\n" for row in rows))
    return 0


@cli.command(exit_codes="0 cancelling, 3 error (unknown or ended build)")
@click.argument("build_id")
@click.option("--json", "json_out", is_flag=True, help="The API's JSON answer.")
@_api_option()
@click.pass_obj
def cancel(rt: Runtime, build_id: str, json_out: bool) -> int:
    """Cancel a running build (its log ends with ABORTED)."""
    body = rt.client().cancel(build_id)
    if json_out:
        rt.out.file.write(json.dumps(body) + "\n")
    else:
        rt.out.print(f"{body.get('build_id', build_id)}: {body.get('status', 'ABORTING')}", soft_wrap=True)
    return 0


# -- view -----------------------------------------------------------------------------------------


@cli.command(exit_codes="0 stopped (Ctrl-C), 3 error (unknown build, bad URL, port in use)")
@click.argument("build_id")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Port on 127.0.0.1 (0: any free port).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
@_api_option()
@click.pass_obj
def view(rt: Runtime, build_id: str, port: int, open_browser: bool) -> int:
    """Watch a build's log in the browser: a page on 127.0.0.1 that reads the API for you.

    The page's requests go through a local proxy that signs them (SigV4) for a deployed API;
    it serves until Ctrl-C.
    """
    try:
        validate_build_id(build_id)
    except ValueError as exc:
        rt.error(str(exc))
        return EXIT_API_ERROR
    client = rt.client()
    client.status(build_id)  # an unknown build or an unusable API: said now, not in the page
    with ExitStack() as exits:
        try:
            url = exits.enter_context(serve_view(client.api_url, build_id, port=port, transport=rt.transport))
        except OSError as exc:
            rt.error(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}")
            return EXIT_API_ERROR
        rt.out.print(url, soft_wrap=True)
        rt.notice(f"viewer for build {build_id} on {client.api_url}; Ctrl-C stops it")
        if open_browser:
            webbrowser.open(url)
        try:
            rt.stop.wait()
        except KeyboardInterrupt:
            rt.notice("stopped")
    return 0


# -- the entry point ------------------------------------------------------------------------------


def main(
    argv: Sequence[str] | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    retry: RetryPolicy | None = None,
    local: LocalRun | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Run the CLI; returns the process exit code (the console script exits with it).

    ``transport``, ``out``/``err``, ``retry``, ``local`` and ``stop`` are for tests: an in-memory API,
    captured output, a backoff that never sleeps, a fake local stack, an end to ``view``.
    """
    rt = Runtime(make_console(out), make_console(err, stderr=True), transport, retry, local)
    if stop is not None:
        rt.stop = stop
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = cli.main(args=args, prog_name="buildlogs", standalone_mode=False, obj=rt)
    except click.ClickException as exc:  # usage errors (no command: the help), bad parameters: 3, not click's 2
        exc.show(file=rt.err.file)
        return EXIT_API_ERROR
    except ApiError as exc:
        rt.error(exc.describe())
        return EXIT_API_ERROR
    except (KeyboardInterrupt, click.Abort):
        rt.notice("interrupted", style="yellow")
        return EXIT_INTERRUPTED
    finally:
        rt.close()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
