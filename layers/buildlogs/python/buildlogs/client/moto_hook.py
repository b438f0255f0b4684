"""The one place that reaches into moto: Step Functions Lambda tasks routed to in-process handlers.

moto's Step Functions interpreter (``execute_state_machine``) runs the ASL for real, but invokes a
task's Lambda function through moto's Lambda mock, which needs Docker. DESIGN.md "Running the real
state machine locally": we replace ``lambda_eval_utils._invoke_lambda_function(parameters, region,
state_credentials)``. Returning ``{"StatusCode": 200, "Payload": result}`` continues the execution;
``{"FunctionError": "Unhandled", "Payload": {"errorType", "errorMessage"}}`` raises that error name,
so Retry and Catch behave as in AWS. The moto version is pinned; :func:`check_hook` fails loudly
when the hook moves (a test calls it, and :func:`route_lambda_tasks` counts its calls).
"""

import importlib
import inspect
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from types import ModuleType
from typing import Any
from unittest import mock

MOTO_VERSION = "5.2.5"  # the version this hook was checked against (requirements pin it)
HOOK_MODULE = "moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils"
HOOK_NAME = "_invoke_lambda_function"
HOOK_PARAMETERS = ("parameters", "region", "state_credentials")
THREADS_MODULE = "moto.stepfunctions.parser.utils"  # TMP_THREADS: the interpreter's worker threads


class HookMoved(RuntimeError):
    """moto no longer has the function the local run patches: pin moto back or move the hook."""


class TaskFailed(Exception):
    """Raised by a task handler: the state fails with ``error_type`` (what Lambda reports as errorType)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type, self.message = error_type, message


# (function name, payload) -> the function's result payload; raises TaskFailed to fail the state.
TaskInvoker = Callable[[str, dict[str, Any]], Any]


@dataclass
class HookCalls:
    """How many tasks the hook has routed (a check that moto really calls it)."""

    count: int = 0
    functions: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, function_name: str) -> None:
        with self._lock:
            self.count += 1
            self.functions.append(function_name)


def check_hook() -> ModuleType:
    """The module holding the hook, after checking moto's version and the hook's signature."""
    installed = version("moto")
    if installed != MOTO_VERSION:
        raise HookMoved(f"moto {installed} is installed; the local run's hook was checked on {MOTO_VERSION}")
    try:
        module = importlib.import_module(HOOK_MODULE)
        hook = getattr(module, HOOK_NAME)
    except (ImportError, AttributeError) as exc:
        raise HookMoved(f"moto has no {HOOK_MODULE}.{HOOK_NAME}") from exc
    if tuple(inspect.signature(hook).parameters) != HOOK_PARAMETERS:
        raise HookMoved(f"{HOOK_NAME} takes {tuple(inspect.signature(hook).parameters)}, not {HOOK_PARAMETERS}")
    return module


def _payload(parameters: dict[str, Any]) -> dict[str, Any]:
    raw = parameters.get("Payload")
    if isinstance(raw, str | bytes | bytearray):
        decoded: Any = json.loads(raw or b"{}")
    elif raw is not None and hasattr(raw, "read"):
        decoded = json.loads(raw.read() or b"{}")
    else:
        decoded = raw or {}
    if not isinstance(decoded, dict):
        raise TaskFailed("InvalidInput", "a task payload must be a JSON object")
    return decoded


@contextmanager
def route_lambda_tasks(invoke: TaskInvoker) -> Iterator[HookCalls]:
    """While active, every Lambda task of every moto execution calls ``invoke`` in-process."""
    module = check_hook()
    calls = HookCalls()

    def hook(parameters: dict[str, Any], region: str, state_credentials: Any) -> dict[str, Any]:
        name = str(parameters.get("FunctionName", ""))
        calls.record(name)
        try:
            result = invoke(name, _payload(parameters))
        except TaskFailed as exc:
            return {
                "StatusCode": 200,
                "FunctionError": "Unhandled",
                "Payload": {"errorType": exc.error_type, "errorMessage": exc.message},
            }
        return {"StatusCode": 200, "Payload": result}

    with mock.patch.object(module, HOOK_NAME, hook):
        yield calls


def wait_for_executions(timeout_s: float) -> bool:
    """Join the interpreter's worker threads (a stopped execution's task may still be returning).

    Leaving the mock while one still runs would let it call real AWS; ``False`` if one outlived
    ``timeout_s``.
    """
    threads = importlib.import_module(THREADS_MODULE).TMP_THREADS
    deadline = time.monotonic() + timeout_s
    for thread in list(threads):
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(thread.is_alive() for thread in threads)
