"""Fixtures of the browser tests: one headless Chromium per module, the API (moto + the real Redis)
behind the local API server, which also serves the viewer page, and a build the API knows."""

from collections.abc import Iterator

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver

from tests.support.api import moto_api, serve_api, spec
from tests.support.browser import Viewer, chromium, delete_build


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium, shared by a module's tests (each test loads its own page)."""
    with chromium() as driver:
        yield driver
        driver.get("about:blank")  # ends the page's long-polls before the API goes away


@pytest.fixture(scope="module")
def viewer(redis_url: str, browser: WebDriver) -> Iterator[Viewer]:
    """The API on moto and the real Redis, served on 127.0.0.1 with the viewer at /builds/{id}/view."""
    with moto_api(redis_url) as api, serve_api() as root:
        yield Viewer(api, root)
        browser.get("about:blank")


@pytest.fixture
def build(viewer: Viewer, redis_url: str, build_id: str) -> Iterator[str]:
    """A submitted build (its execution RUNNING in moto) with no log yet; its keys deleted afterwards."""
    response = viewer.api.call("POST", "/builds", spec(build_id=build_id))
    assert response.status == 202, response.body
    yield build_id
    delete_build(redis_url, build_id)
