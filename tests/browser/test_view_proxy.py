"""The viewer through `buildlogs view`'s proxy (the way a deployed API is watched), in headless Chromium."""

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from buildlogs.client.view import serve_view
from tests.support.browser import Viewer, end_entry, entry, line_in_view, rendered_ids, wait_for, xadd_entries

pytestmark = [pytest.mark.redis]


def test_the_page_through_the_proxy_follows_the_build_to_its_end(
    browser: WebDriver, viewer: Viewer, redis_url: str, build: str
) -> None:
    # GIVEN a running build and the proxy in front of its API
    first = xadd_entries(redis_url, build, [entry("start", "booting")])
    with serve_view(viewer.root, build) as page_url:
        # WHEN the page is opened from the proxy and the build goes on to its end
        browser.get(page_url)
        wait_for(browser, lambda d: first[0] in rendered_ids(d), "the first line")
        later = xadd_entries(redis_url, build, [entry("start", "listening on 3000"), end_entry("start", "SUCCEEDED")])
        # THEN the page, reading the API only through the proxy, follows it to the end
        wait_for(browser, lambda d: line_in_view(d, later[-1]), "the end entry")
        status = browser.find_element(By.ID, "build-status")
        wait_for(browser, lambda d: status.get_attribute("data-status") == "SUCCEEDED", "the end status")
        assert browser.find_element(By.ID, "download").get_attribute("href").startswith(page_url.rsplit("/view", 1)[0])
        browser.get("about:blank")
