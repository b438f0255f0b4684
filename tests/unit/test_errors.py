"""The typed errors a stage raises: a friendly message and the command's exit code."""

from buildlogs.errors import CommandFailed


def test_errors_carry_a_friendly_message_and_the_exit_code() -> None:
    error = CommandFailed("install command exited with code 3: npm ci", 3)
    assert (str(error), error.message, error.exit_code) == ("install command exited with code 3: npm ci",) * 2 + (3,)
