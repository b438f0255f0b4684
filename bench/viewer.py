"""The log viewer's time to first paint of the tail of a 100,000-line log, against baselines.

Setup: a 100,000-line log (80-byte lines, one stage) and a 10-line log in the Redis of REDIS_URL,
both builds known to the API (moto Step Functions), the API resolver behind the local API server
on 127.0.0.1 (which serves the page), headless Chromium (Debian's, through chromedriver).

Measured, interleaved, medians of RUNS after one warm-up each:
- page, 100k: navigation start → the ``buildlogs:first-paint`` mark (the frame after the tail's
  first lines entered the DOM), the page's own request for ``/logs?tail=`` included;
- page, 10 lines: the same page on a tiny log (baseline 1: does log size matter?);
- bare HTTP: ``GET /builds/{id}/logs?tail=500`` on the 100k log from Python (baseline 2: the data
  the page needs, with no browser).
Printed: the figures and the ratios page-100k / page-10 and page-100k / bare HTTP, and the line
nodes in the DOM. No target: reported, as the other benches (machines here are noisy).
"""

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import redis as sync_redis
from moto import mock_aws
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from bench.common import REDIS_URL, median
from buildlogs.api.app import app
from buildlogs.api.deps import deps
from buildlogs.client.local_api import serve
from buildlogs.keys import logs_key, meta_key, summary_key
from buildlogs.settings import Settings

LINES = 100_000
SMALL = 10
RUNS = 5
TAIL = 500  # the page's first request
LINE = "x" * 60  # with the "line N " prefix: ~80-byte lines, as in the other benches
PASS_MACHINE = json.dumps({"StartAt": "Provision", "States": {"Provision": {"Type": "Pass", "End": True}}})
FIRST_PAINT = "return performance.getEntriesByName('buildlogs:first-paint')[0]?.startTime ?? null"


def entries(count: int) -> Iterator[dict[str, str]]:
    ts = str(time.time_ns() // 1_000_000)
    yield {"ts": ts, "source": "system", "phase": "build", "text": "--- Building ---", "event": "stage_start"}
    for index in range(count):
        yield {"ts": ts, "source": "stdout", "phase": "build", "text": f"line {index} {LINE}"}
    yield {"ts": ts, "source": "system", "phase": "build", "text": "build finished", "event": "stage_end"}
    yield {
        "ts": ts,
        "source": "system",
        "phase": "build",
        "text": "BUILD SUCCEEDED",
        "event": "end",
        "status": "SUCCEEDED",
    }


def write_log(client: sync_redis.Redis, build_id: str, count: int) -> float:
    """XADD the log in pipelines of 1,000; returns the lines per second written."""
    started, pipe, key = time.perf_counter(), client.pipeline(transaction=False), logs_key(build_id)
    for number, item in enumerate(entries(count), 1):
        pipe.xadd(key, item)  # type: ignore[arg-type]
        if number % 1000 == 0:
            pipe.execute()
    pipe.execute()
    return count / (time.perf_counter() - started)


def chromium() -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def first_paint_ms(driver: WebDriver, url: str) -> tuple[float, int]:
    """Milliseconds from navigation start to the first paint of the log's lines, and the line nodes."""
    driver.get("about:blank")
    driver.get(url)
    try:
        painted: Any = WebDriverWait(driver, 60, poll_frequency=0.01).until(lambda d: d.execute_script(FIRST_PAINT))
    except TimeoutException:
        status = driver.execute_script("return document.getElementById('status')?.textContent")
        raise RuntimeError(f"the page never painted its log: {status!r}") from None
    nodes = int(driver.execute_script("return document.querySelectorAll('[data-entry-id]').length"))
    return float(painted), nodes


def bare_tail_ms(http: httpx.Client, url: str) -> float:
    started = time.perf_counter()
    response = http.get(url, params={"tail": TAIL})
    response.raise_for_status()
    assert len(response.json()["entries"]) == TAIL
    return (time.perf_counter() - started) * 1000


def main() -> None:
    client: sync_redis.Redis = sync_redis.Redis.from_url(REDIS_URL, decode_responses=True)
    big, small = f"bench-view-{uuid.uuid4().hex[:10]}", f"bench-view-{uuid.uuid4().hex[:10]}"
    with mock_aws():
        sfn, s3 = boto3.client("stepfunctions", region_name="us-east-1"), boto3.client("s3", region_name="us-east-1")
        for bucket in ("bench-sources", "bench-archive"):
            s3.create_bucket(Bucket=bucket)
        arn = sfn.create_state_machine(
            name="bench", definition=PASS_MACHINE, roleArn="arn:aws:iam::123456789012:role/sfn"
        )["stateMachineArn"]
        for build_id in (big, small):
            sfn.start_execution(stateMachineArn=arn, name=build_id, input="{}")
        deps.settings = Settings.model_validate(
            {
                "REDIS_URL": REDIS_URL,
                "STATE_MACHINE_ARN": arn,
                "SOURCES_BUCKET": "bench-sources",
                "LOG_ARCHIVE_BUCKET": "bench-archive",
            }
        )
        deps.sfn, deps.s3 = sfn, s3
        driver = chromium()
        try:
            rate = write_log(client, big, LINES)
            write_log(client, small, SMALL)
            with serve(app.resolve) as root, httpx.Client(timeout=60) as http:
                pages = {name: f"{root}builds/{name}/view" for name in (big, small)}
                tail_url = f"{root}builds/{big}/logs"
                for name in (big, small):  # warm-up: imports, the stage summary cached in Redis, the browser
                    first_paint_ms(driver, pages[name])
                bare_tail_ms(http, tail_url)
                big_ms, small_ms, bare_ms, nodes = [], [], [], []
                for _ in range(RUNS):
                    painted, count = first_paint_ms(driver, pages[big])
                    big_ms.append(painted)
                    nodes.append(count)
                    small_ms.append(first_paint_ms(driver, pages[small])[0])
                    bare_ms.append(bare_tail_ms(http, tail_url))
                driver.get("about:blank")
        finally:
            driver.quit()
            deps.reset()
            for build_id in (big, small):
                client.delete(logs_key(build_id), meta_key(build_id), summary_key(build_id))
    page_big, page_small, bare = median(big_ms), median(small_ms), median(bare_ms)
    print(f"viewer: time to first paint of the tail, headless Chromium, local API, {REDIS_URL}")
    print(f"  {LINES:,}-line log written at {rate:,.0f} lines/s; medians of {RUNS} after a warm-up")
    runs = {"big": big_ms, "small": small_ms, "bare": bare_ms}
    rows = [
        (f"page, {LINES:,} lines", f"{page_big:8.1f} ms  (runs: {_joined(runs['big'])})"),
        (f"page, {SMALL} lines", f"{page_small:8.1f} ms  (runs: {_joined(runs['small'])})"),
        (f"bare GET /logs?tail={TAIL}", f"{bare:8.1f} ms  (runs: {_joined(runs['bare'])})"),
        ("ratio page 100k / page 10", f"{page_big / page_small:.2f}"),
        ("ratio page 100k / bare tail", f"{page_big / bare:.2f}"),
        ("line nodes in the DOM", f"{max(nodes)} (of {TAIL} loaded, {LINES:,} in the log)"),
    ]
    for label, value in rows:
        print(f"  {label:<28}: {value}")


def _joined(values: list[float]) -> str:
    return ", ".join(f"{value:.0f}" for value in values)


if __name__ == "__main__":
    main()
