"""Settings from environment variables: defaults, minimums, empty values, booleans, the runtime, the cache."""

import re

import pytest

from buildlogs.settings import Settings, get_settings

DEFAULTS = {
    "redis_url": "",
    "redis_cluster": False,
    "log_archive_bucket": "",
    "log_stream_ttl_seconds": 3600,
    "log_stream_maxlen": 100_000,
    "log_max_line_bytes": 16_384,
    "log_flush_lines": 500,
    "log_flush_interval_ms": 5,
    "state_machine_arn": "",
    "sources_bucket": "",
    "execution_timeout_seconds": 10_800,
    "archive_sweep_lookback_minutes": 120,
    "e2b_api_key_secret_arn": "",
    "e2b_api_key": "",
    "sandbox_runtime": "local",
    "sandbox_keep_alive_seconds": 3600,
    "stage": "",
    "api_url": "",
}

# Every integer variable and its smallest allowed value.
MINIMUMS = {
    "LOG_STREAM_TTL_SECONDS": 1,
    "LOG_STREAM_MAXLEN": 10,
    "LOG_MAX_LINE_BYTES": 64,
    "LOG_FLUSH_LINES": 1,
    "LOG_FLUSH_INTERVAL_MS": 0,
    "ARCHIVE_SWEEP_LOOKBACK_MINUTES": 1,
    "EXECUTION_TIMEOUT_SECONDS": 60,
    "SANDBOX_KEEP_ALIVE_SECONDS": 60,
}

VARIABLES = [str(field.validation_alias) for field in Settings.model_fields.values()]


def exactly(message: str) -> str:
    """A ``match=`` pattern for exactly ``message``."""
    return f"^{re.escape(message)}$"


def test_an_empty_environment_gives_every_default() -> None:
    # GIVEN no variables WHEN the settings are read THEN every field has its default
    assert Settings.from_env({}).model_dump() == DEFAULTS


def test_variables_outside_the_settings_are_ignored() -> None:
    # GIVEN an environment like a real one, with variables of other programs
    env = {"PATH": "/usr/bin", "HOME": "/root", "AWS_REGION": "eu-west-1", "LOG_LEVEL": "DEBUG"}
    # WHEN the settings are read THEN none of them is taken, and none is an error
    assert Settings.from_env(env).model_dump() == DEFAULTS


def test_each_variable_sets_its_field() -> None:
    # GIVEN a value for every variable
    env = {
        "REDIS_URL": "redis://cache:6379/0",
        "REDIS_CLUSTER": "true",
        "LOG_ARCHIVE_BUCKET": "archive",
        "LOG_STREAM_TTL_SECONDS": "60",
        "LOG_STREAM_MAXLEN": "1000",
        "LOG_MAX_LINE_BYTES": "128",
        "LOG_FLUSH_LINES": "7",
        "LOG_FLUSH_INTERVAL_MS": "0",
        "STATE_MACHINE_ARN": "arn:aws:states:eu-west-1:123456789012:stateMachine:Builds",
        "SOURCES_BUCKET": "sources",
        "EXECUTION_TIMEOUT_SECONDS": "3600",
        "ARCHIVE_SWEEP_LOOKBACK_MINUTES": "30",
        "E2B_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:e2b",
        "E2B_API_KEY": "e2b_key",
        "SANDBOX_RUNTIME": "e2b",
        "SANDBOX_KEEP_ALIVE_SECONDS": "600",
        "STAGE": "install",
        "BUILDLOGS_API_URL": "https://api.example.com/prod",
    }
    assert sorted(env) == sorted(VARIABLES)  # the test covers every variable there is
    # WHEN the settings are read
    settings = Settings.from_env(env)
    # THEN each one landed in its field, typed
    assert settings.model_dump() == {
        "redis_url": "redis://cache:6379/0",
        "redis_cluster": True,
        "log_archive_bucket": "archive",
        "log_stream_ttl_seconds": 60,
        "log_stream_maxlen": 1000,
        "log_max_line_bytes": 128,
        "log_flush_lines": 7,
        "log_flush_interval_ms": 0,
        "state_machine_arn": "arn:aws:states:eu-west-1:123456789012:stateMachine:Builds",
        "sources_bucket": "sources",
        "execution_timeout_seconds": 3600,
        "archive_sweep_lookback_minutes": 30,
        "e2b_api_key_secret_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:e2b",
        "e2b_api_key": "e2b_key",
        "sandbox_runtime": "e2b",
        "sandbox_keep_alive_seconds": 600,
        "stage": "install",
        "api_url": "https://api.example.com/prod",
    }


def test_the_minimums_cover_every_integer_variable() -> None:
    integers = {str(field.validation_alias) for field in Settings.model_fields.values() if field.annotation is int}
    assert set(MINIMUMS) == integers


@pytest.mark.parametrize(("name", "minimum"), MINIMUMS.items())
def test_an_integer_below_its_minimum_is_an_error_naming_the_variable(name: str, minimum: int) -> None:
    # GIVEN the variable one below its minimum WHEN the settings are read THEN the error names it
    with pytest.raises(ValueError, match=exactly(f"{name} must be >= {minimum}, got {minimum - 1}")):
        Settings.from_env({name: str(minimum - 1)})


@pytest.mark.parametrize(("name", "minimum"), MINIMUMS.items())
def test_an_integer_at_its_minimum_is_accepted(name: str, minimum: int) -> None:
    settings = Settings.from_env({name: str(minimum)})
    assert getattr(settings, name.lower()) == minimum


@pytest.mark.parametrize("value", ["ten", "1.5", "0x10"])
def test_an_integer_that_is_not_one_is_an_error_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match=exactly(f"LOG_FLUSH_LINES must be an integer, got '{value}'")):
        Settings.from_env({"LOG_FLUSH_LINES": value})


def test_every_bad_variable_is_reported_at_once() -> None:
    # GIVEN two bad variables WHEN the settings are read THEN one error names both
    with pytest.raises(ValueError, match="LOG_STREAM_MAXLEN must be >= 10") as raised:
        Settings.from_env({"LOG_STREAM_MAXLEN": "9", "REDIS_CLUSTER": "maybe"})
    assert "REDIS_CLUSTER must be true or false, got 'maybe'" in str(raised.value)


@pytest.mark.parametrize("empty", ["", " ", "\t", " \n "])
@pytest.mark.parametrize("name", VARIABLES)
def test_an_empty_or_blank_value_means_the_default(name: str, empty: str) -> None:
    # GIVEN the variable set to nothing but whitespace WHEN the settings are read THEN it is the default
    assert Settings.from_env({name: empty}).model_dump() == DEFAULTS


def test_values_are_stripped() -> None:
    settings = Settings.from_env({"LOG_FLUSH_LINES": " 42 ", "LOG_ARCHIVE_BUCKET": "\tarchive\n"})
    assert (settings.log_flush_lines, settings.log_archive_bucket) == (42, "archive")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("True", True), ("1", True), ("false", False), ("FALSE", False), ("0", False)],
)
def test_redis_cluster_is_true_or_false(value: str, expected: bool) -> None:
    assert Settings.from_env({"REDIS_CLUSTER": value}).redis_cluster is expected


@pytest.mark.parametrize("value", ["maybe", "2", "cluster"])
def test_an_invalid_redis_cluster_is_an_error_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match=exactly(f"REDIS_CLUSTER must be true or false, got '{value}'")):
        Settings.from_env({"REDIS_CLUSTER": value})


@pytest.mark.parametrize(
    ("value", "expected"), [("e2b", "e2b"), ("E2B", "e2b"), (" Local ", "local"), ("LOCAL", "local")]
)
def test_sandbox_runtime_is_case_insensitive(value: str, expected: str) -> None:
    assert Settings.from_env({"SANDBOX_RUNTIME": value}).sandbox_runtime == expected


@pytest.mark.parametrize("value", ["docker", "e2b-local", "firecracker"])
def test_an_unknown_sandbox_runtime_is_an_error_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match=exactly(f"SANDBOX_RUNTIME must be 'e2b' or 'local', got '{value}'")):
        Settings.from_env({"SANDBOX_RUNTIME": value})


def test_explicit_settings_never_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an environment with values
    monkeypatch.setenv("REDIS_URL", "redis://from-env:6379")
    monkeypatch.setenv("LOG_FLUSH_LINES", "7")
    # WHEN settings are made by field name THEN only the given values differ from the defaults
    settings = Settings(log_flush_lines=9)
    assert settings.model_dump() == {**DEFAULTS, "log_flush_lines": 9}


def test_get_settings_reads_the_environment_once_until_the_cache_is_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the process environment with a value, read once
    monkeypatch.setenv("LOG_FLUSH_LINES", "7")
    first = get_settings()
    assert first.log_flush_lines == 7

    # WHEN the environment changes THEN the cached settings are still returned, unchanged
    monkeypatch.setenv("LOG_FLUSH_LINES", "8")
    assert get_settings() is first
    assert get_settings().log_flush_lines == 7

    # WHEN the cache is cleared THEN the environment is read again
    get_settings.cache_clear()
    again = get_settings()
    assert again is not first
    assert again.log_flush_lines == 8


def test_get_settings_raises_for_a_bad_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_STREAM_TTL_SECONDS", "0")
    with pytest.raises(ValueError, match=exactly("LOG_STREAM_TTL_SECONDS must be >= 1, got 0")):
        get_settings()


def test_only_the_variables_own_names_are_read() -> None:
    # GIVEN an environment holding a field's name in lower case (another program's variable)
    env = {"redis_url": "redis://elsewhere:6379/0", "log_flush_lines": "0"}
    # WHEN the settings are read
    settings = Settings.from_env(env)
    # THEN neither is taken (and the invalid one raises nothing)
    assert settings.redis_url == ""
    assert settings.log_flush_lines == Settings().log_flush_lines
