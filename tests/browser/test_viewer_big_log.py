"""The viewer on a 100,000-line log: a search hit far back, a permalink far back, a windowed DOM."""

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.support.api import spec
from tests.support.browser import (
    Viewer,
    big_log,
    delete_build,
    end_entry,
    entry,
    line_in_view,
    rendered_ids,
    view_url,
    wait_for,
    xadd_entries,
)

pytestmark = [pytest.mark.redis]

LINES = 100_000
NEEDLE = "needle-7f3a"
# Line indexes (of the 100,000) that hold the needle: one near the start, one in the middle, one near the end.
MARKS = {12: f"found {NEEDLE} early", 50_000: f"found {NEEDLE} midway", 99_990: f"found {NEEDLE} late"}
MAX_LINE_NODES = 2_000


@dataclass
class BigLog:
    build_id: str
    ids: list[str]  # the ids of the 100,000 lines (index = line number)


@pytest.fixture(scope="module")
def big(viewer: Viewer, redis_url: str) -> Iterator[BigLog]:
    """A finished build whose log is 100,000 lines of one stage (written once for the module)."""
    build_id = f"t-big-{uuid.uuid4().hex[:12]}"
    assert viewer.api.call("POST", "/builds", spec(build_id=build_id)).status == 202
    xadd_entries(redis_url, build_id, [entry("build", "--- build ---", "system", event="stage_start")])
    ids = xadd_entries(redis_url, build_id, big_log(LINES, MARKS))
    xadd_entries(
        redis_url,
        build_id,
        [
            entry("build", "build finished", "system", event="stage_end", duration_ms=1, exit_code=0),
            end_entry("build", "SUCCEEDED"),
        ],
    )
    yield BigLog(build_id, ids)
    delete_build(redis_url, build_id)


def _line_nodes(driver: WebDriver) -> int:
    return int(driver.execute_script("return document.querySelectorAll('[data-entry-id]').length"))


def _loaded(driver: WebDriver) -> int:
    return int(driver.find_element(By.ID, "log").get_attribute("data-loaded") or 0)


def test_the_page_opens_at_the_tail_without_reading_the_whole_log(
    browser: WebDriver, viewer: Viewer, big: BigLog
) -> None:
    # WHEN the viewer opens a 100,000-line log
    browser.get(view_url(viewer.root, big.build_id))
    # THEN its last lines are in view at once, and only a page of the log was read
    wait_for(browser, lambda d: line_in_view(d, big.ids[-1]), "the last line in view")
    assert _loaded(browser) < 1_000
    assert 0 < _line_nodes(browser) < MAX_LINE_NODES


def test_a_search_finds_hits_far_back_with_the_count_of_the_whole_log(
    browser: WebDriver, viewer: Viewer, big: BigLog
) -> None:
    # GIVEN the viewer at the tail of the log
    browser.get(view_url(viewer.root, big.build_id))
    wait_for(browser, lambda d: line_in_view(d, big.ids[-1]), "the tail")
    # WHEN the needle is searched for
    box = browser.find_element(By.ID, "search")
    box.send_keys(NEEDLE, Keys.ENTER)
    count = browser.find_element(By.ID, "search-count")
    # THEN the count is the whole log's and the first hit, 99,988 lines back, is fetched and shown
    wait_for(browser, lambda d: count.text == "1 / 3", "the hit count 1 / 3")
    first = big.ids[12]
    wait_for(browser, lambda d: line_in_view(d, first), "the first hit in view")
    assert "current-hit" in browser.find_element(By.CSS_SELECTOR, f"[data-entry-id='{first}']").get_attribute("class")
    # AND next / previous move through the hits
    browser.find_element(By.ID, "search-next").click()
    wait_for(browser, lambda d: count.text == "2 / 3", "the count 2 / 3")
    wait_for(browser, lambda d: line_in_view(d, big.ids[50_000]), "the second hit in view")
    browser.find_element(By.ID, "search-prev").click()
    wait_for(browser, lambda d: count.text == "1 / 3" and line_in_view(d, first), "back on the first hit")
    assert _loaded(browser) < 2_000  # hits were fetched around, not the log in between
    assert _line_nodes(browser) < MAX_LINE_NODES


def test_a_permalink_far_back_opens_on_its_line_highlighted(browser: WebDriver, viewer: Viewer, big: BigLog) -> None:
    # GIVEN the link to line 20 of 100,000
    target = big.ids[20]
    browser.get("about:blank")
    # WHEN it is opened
    browser.get(view_url(viewer.root, big.build_id, anchor=target))
    # THEN that line is fetched, scrolled into view and highlighted, without reading the log in between
    wait_for(browser, lambda d: line_in_view(d, target), "the linked line in view")
    line = browser.find_element(By.CSS_SELECTOR, f"[data-entry-id='{target}']")
    assert "highlight" in line.get_attribute("class")
    assert line.find_element(By.CSS_SELECTOR, ".text").text == "line 20 of a long build log, nothing special here"
    assert _loaded(browser) < 2_000
    # AND the line's own anchor is that link
    assert line.find_element(By.CSS_SELECTOR, "a.anchor").get_attribute("href").endswith(f"/view#{target}")


def test_loading_earlier_keeps_the_dom_windowed(browser: WebDriver, viewer: Viewer, big: BigLog) -> None:
    # GIVEN the viewer at the tail
    browser.get(view_url(viewer.root, big.build_id))
    wait_for(browser, lambda d: line_in_view(d, big.ids[-1]), "the tail")
    # WHEN earlier lines are loaded page after page until thousands of lines are loaded
    button = browser.find_element(By.ID, "load-earlier")
    for _ in range(5):
        before = _loaded(browser)
        button.click()
        wait_for(browser, lambda d, before=before: _loaded(d) > before, "a page of earlier lines")
    loaded = _loaded(browser)
    # THEN the DOM holds only the rows around the view, wherever the view is
    assert loaded > 5_000
    assert _line_nodes(browser) < MAX_LINE_NODES
    browser.execute_script("const log = document.getElementById('log'); log.scrollTop = log.scrollHeight / 2;")
    middle = wait_for(browser, lambda d: [i for i in rendered_ids(d) if i not in big.ids[-200:]], "rows in the middle")
    assert middle
    assert _line_nodes(browser) < MAX_LINE_NODES
    # AND the rows stay in log order with one fixed height
    heights = browser.execute_script(
        "return [...document.querySelectorAll('[data-entry-id]')].map((n) => n.getBoundingClientRect().height)"
    )
    assert set(heights) == {18}
