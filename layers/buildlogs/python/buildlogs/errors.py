"""Typed stage errors: their class names are the error names Step Functions retries or catches.

A Lambda error's ``errorType`` is the exception's class name, so these names must stay equal to
``stages.COMMAND_FAILED`` and ``stages.SANDBOX_UNAVAILABLE`` (a test checks it).
"""


class BuildError(Exception):
    """A stage failed for a reason worth showing to the user (the message is friendly)."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class CommandFailed(BuildError):
    """A build command failed or timed out, or the dev server did not come up: never retried."""


class SandboxUnavailable(BuildError):
    """The sandbox could not be created or reached: transient, retried with backoff."""


class SandboxGone(BuildError):
    """The sandbox no longer exists (E2B: not found; killed or timed out): never retried."""


class InvalidInput(BuildError):
    """The stage's input or the stored BuildSpec is invalid: never retried."""
