"""Helpers of the browser tests: headless Chromium (selenium) on the viewer, logs written fast.

The browser is Debian's ``chromium`` + ``chromium-driver`` (``.ci/run`` installs them). A missing
browser is a failure with the command that installs it, never a skip.
"""

import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import redis as sync_redis
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from buildlogs.keys import logs_key, meta_key, summary_key
from tests.support.api import Api

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (1280, 900)
T = TypeVar("T")


@dataclass
class Viewer:
    """The API (in-process, for setting up builds) and the root URL the browser reaches it at."""

    api: Api
    root: str


@contextmanager
def chromium() -> Iterator[WebDriver]:
    """Headless Chromium driven by chromedriver; fails (never skips) when either is missing."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        pytest.fail(
            f"the browser tests need {', '.join(missing)}: apt-get install chromium chromium-driver (or run .ci/run)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], T], what: str, timeout: float = 20) -> T:
    """Poll ``condition`` (selenium's WebDriverWait: no fixed sleeps) until it is truthy; fail with ``what``."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)
    except TimeoutException:
        pytest.fail(f"timed out after {timeout}s waiting for {what}; page status: {page_status(driver)!r}")


def page_status(driver: WebDriver) -> str:
    """The viewer's status line (what it says went wrong, if anything)."""
    try:
        return str(driver.execute_script("return document.getElementById('status')?.textContent || ''"))
    except Exception as exc:  # the page itself is gone
        return f"<no page: {exc}>"


def rendered_ids(driver: WebDriver) -> list[str]:
    """The entry ids of the line nodes now in the DOM, in DOM order."""
    ids = driver.execute_script(
        "return [...document.querySelectorAll('[data-entry-id]')].map((node) => node.dataset.entryId)"
    )
    return [str(value) for value in ids]


def line_in_view(driver: WebDriver, entry_id: str) -> bool:
    """Whether the line node of ``entry_id`` is rendered inside the visible part of the log."""
    script = """
        const node = document.querySelector(`[data-entry-id="${arguments[0]}"]`);
        if (!node) return false;
        const box = node.getBoundingClientRect(), view = document.getElementById('log').getBoundingClientRect();
        return box.top >= view.top - 1 && box.bottom <= view.bottom + 1;
    """
    return bool(driver.execute_script(script, entry_id))


def view_url(api_root: str, build_id: str, anchor: str = "") -> str:
    return f"{api_root.rstrip('/')}/builds/{build_id}/view" + (f"#{anchor}" if anchor else "")


def entry(phase: str, text: str, source: str = "stdout", **fields: Any) -> dict[str, str]:
    """One stream entry as LogStreamer writes it (every value a string, ``ts`` now)."""
    values = {"ts": time.time_ns() // 1_000_000, "source": source, "phase": phase, "text": text, **fields}
    return {name: str(value) for name, value in values.items()}


def stage_lines(
    phase: str, lines: Iterable[str], *, exit_code: int = 0, duration_ms: int = 1234
) -> list[dict[str, str]]:
    """A whole stage: its banner (stage_start), ``lines`` on stdout, its stage_end."""
    return [
        entry(phase, f"--- {phase} ---", "system", event="stage_start"),
        *(entry(phase, text) for text in lines),
        entry(phase, f"{phase} finished", "system", event="stage_end", duration_ms=duration_ms, exit_code=exit_code),
    ]


def xadd_entries(redis_url: str, build_id: str, entries: Iterable[dict[str, str]], batch: int = 1000) -> list[str]:
    """XADD ``entries`` to the build's stream in pipelines of ``batch`` (100,000 lines in ~2 s); their ids."""
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    key, ids, pipe, pending = logs_key(build_id), [], client.pipeline(transaction=False), 0
    try:
        for item in entries:
            pipe.xadd(key, item)  # type: ignore[arg-type]
            pending += 1
            if pending == batch:
                ids += pipe.execute()
                pending = 0
        if pending:
            ids += pipe.execute()
    finally:
        client.close()
    return [str(entry_id) for entry_id in ids]


def big_log(count: int, marks: dict[int, str], phase: str = "build") -> Iterator[dict[str, str]]:
    """``count`` stdout lines of ``phase`` (line ``i`` reads ``line i``; ``marks`` replaces some texts)."""
    ts = str(time.time_ns() // 1_000_000)
    for index in range(count):
        text = marks.get(index, f"line {index} of a long build log, nothing special here")
        yield {"ts": ts, "source": "stdout", "phase": phase, "text": text}


def end_entry(phase: str, status: str) -> dict[str, str]:
    return entry(phase, f"BUILD {status}", "system", event="end", status=status)


def delete_build(redis_url: str, build_id: str) -> None:
    """The build's keys gone: the shared Redis keeps no test data."""
    client = sync_redis.Redis.from_url(redis_url)
    try:
        client.delete(logs_key(build_id), meta_key(build_id), summary_key(build_id))
    finally:
        client.close()
