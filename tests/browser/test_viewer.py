"""The log viewer in headless Chromium against the local API, moto and the real Redis: small logs."""

from pathlib import Path

import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from buildlogs.stream.ansi import strip_ansi
from tests.support.browser import (
    Viewer,
    end_entry,
    entry,
    line_in_view,
    page_status,
    rendered_ids,
    stage_lines,
    view_url,
    wait_for,
    xadd_entries,
)

pytestmark = [pytest.mark.redis]


def _text_of(driver: WebDriver, entry_id: str) -> str:
    script = "return document.querySelector(`[data-entry-id='${arguments[0]}'] .text`)?.textContent ?? null"
    return str(driver.execute_script(script, entry_id))


def test_the_page_follows_a_running_build(browser: WebDriver, viewer: Viewer, redis_url: str, build: str) -> None:
    # GIVEN a running build with a few lines, open in the viewer
    first = xadd_entries(redis_url, build, stage_lines("install", ["npm install", "added 3 packages"])[:-1])
    browser.get(view_url(viewer.root, build))
    wait_for(browser, lambda d: first[-1] in rendered_ids(d), "the first lines")
    # WHEN a writer appends lines (more than a screen) and then ends the log
    more = xadd_entries(redis_url, build, [entry("install", f"progress {n}") for n in range(120)])
    wait_for(browser, lambda d: line_in_view(d, more[-1]), "the newest appended line, in view")
    end = xadd_entries(redis_url, build, [end_entry("install", "SUCCEEDED")])
    # THEN the page shows every line as it comes, keeps the newest in view, and stops at the end
    wait_for(browser, lambda d: line_in_view(d, end[0]), "the end entry")
    status = browser.find_element(By.ID, "build-status")
    wait_for(browser, lambda d: status.get_attribute("data-status") == "SUCCEEDED", "the build's end status")
    assert _text_of(browser, more[-1]) == "progress 119"


def test_stages_are_sections_and_the_failed_one_opens_on_its_build_failed_line(
    browser: WebDriver, viewer: Viewer, redis_url: str, build: str
) -> None:
    # GIVEN a build that failed in `build` after two stages that passed, then ran cleanup
    xadd_entries(redis_url, build, stage_lines("provision", ["sandbox ready"], duration_ms=2500))
    xadd_entries(redis_url, build, stage_lines("install", [f"installing {n}" for n in range(30)]))
    xadd_entries(redis_url, build, stage_lines("build", [f"compiling {n}" for n in range(40)])[:-1])
    failed = xadd_entries(
        redis_url,
        build,
        [
            entry("build", "error TS2304: cannot find name 'x'", "stderr"),
            entry("build", "BUILD FAILED: build exited 2", "system", event="build_failed"),
            entry("build", "build finished", "system", event="stage_end", duration_ms=4200, exit_code=2),
        ],
    )
    xadd_entries(redis_url, build, [*stage_lines("cleanup", ["sandbox killed"] * 60), end_entry("cleanup", "FAILED")])
    # WHEN the viewer opens
    browser.get(view_url(viewer.root, build))
    # THEN each stage is a section with its result and duration; the failed one is open, the passed ones folded
    # (sections are re-rendered as the status arrives: read them afresh each time)
    wait_for(browser, lambda d: _section(d, "build").get("status") == "failed", "build marked failed")
    wait_for(browser, lambda d: _section(d, "provision").get("status") == "succeeded", "provision marked passed")
    build_section, provision = _section(browser, "build"), _section(browser, "provision")
    assert build_section["open"] == "true"
    assert "✗" in build_section["text"]
    assert "4.2 s" in build_section["text"]
    assert provision["open"] == "false"
    assert "✓" in provision["text"]
    assert "2.5 s" in provision["text"]
    phases = browser.execute_script(
        "return [...document.querySelectorAll('#sections .section')].map(s => s.dataset.phase)"
    )
    assert phases == ["provision", "install", "build", "cleanup"]
    # AND the view is scrolled to the build_failed line, not to the end of cleanup
    wait_for(browser, lambda d: line_in_view(d, failed[1]), "the build_failed line in view")
    assert _text_of(browser, failed[1]) == "BUILD FAILED: build exited 2"
    # AND a folded section opens on a click
    browser.execute_script("document.querySelector(\"#sections .section[data-phase='provision'] button\").click()")
    wait_for(browser, lambda d: _section(d, "provision").get("open") == "true", "provision open after a click")


def test_the_failed_stage_opens_on_its_build_failed_line_far_before_the_end(
    browser: WebDriver, viewer: Viewer, redis_url: str, build: str
) -> None:
    # GIVEN a build that failed in `build`, then ran a cleanup of 25,000 lines (far more than the
    # first page, and than one filtered backward page scans)
    xadd_entries(redis_url, build, stage_lines("install", ["installed"]))
    xadd_entries(redis_url, build, stage_lines("build", [f"compiling {n}" for n in range(40)])[:-1])
    failed = xadd_entries(
        redis_url,
        build,
        [
            entry("build", "BUILD FAILED: build exited 2", "system", event="build_failed"),
            entry("build", "build finished", "system", event="stage_end", duration_ms=4200, exit_code=2),
        ],
    )
    cleanup = (entry("cleanup", f"removing file {n}") for n in range(25_000))
    xadd_entries(redis_url, build, [entry("cleanup", "--- cleanup ---", "system", event="stage_start"), *cleanup])
    xadd_entries(redis_url, build, [end_entry("cleanup", "FAILED")])
    # WHEN the viewer opens
    browser.get(view_url(viewer.root, build))
    # THEN the build section opens and the build_failed line is in view, highlighted
    wait_for(browser, lambda d: _section(d, "build").get("status") == "failed", "build marked failed")
    wait_for(browser, lambda d: line_in_view(d, failed[0]), "the build_failed line in view")
    assert _section(browser, "build")["open"] == "true"
    assert _text_of(browser, failed[0]) == "BUILD FAILED: build exited 2"
    highlighted = browser.find_element(By.CSS_SELECTOR, f"[data-entry-id='{failed[0]}']")
    assert "highlight" in (highlighted.get_attribute("class") or "")


def _section(driver: WebDriver, phase: str) -> dict[str, str]:
    """A section's data-status, data-open and text, read in one go (the node may be replaced any time)."""
    script = """
        const node = document.querySelector(`#sections .section[data-phase='${arguments[0]}']`);
        return node ? {status: node.dataset.status, open: node.dataset.open, text: node.textContent} : {};
    """
    return dict(driver.execute_script(script, phase))


def test_ansi_colours_are_rendered_and_no_escape_is_shown(
    browser: WebDriver, viewer: Viewer, redis_url: str, build: str
) -> None:
    # GIVEN lines with 16-colour, 256-colour, truecolour and bold SGR codes, and a cursor escape
    text = (
        "\x1b[31mred\x1b[0m \x1b[1;38;5;208mbold orange\x1b[0m \x1b[38;2;10;200;30mtrue\x1b[39m"
        " \x1b[44mon blue\x1b[0m\x1b[2K\x1b]0;title\x07 plain"
    )
    ids = xadd_entries(redis_url, build, [entry("build", text), end_entry("build", "SUCCEEDED")])
    # WHEN the viewer shows it
    browser.get(view_url(viewer.root, build))
    wait_for(browser, lambda d: ids[0] in rendered_ids(d), "the coloured line")
    line = browser.find_element(By.CSS_SELECTOR, f"[data-entry-id='{ids[0]}'] .text")
    # THEN the text is the printable text only, each part in its colour
    assert line.get_attribute("textContent") == "red bold orange true on blue plain"
    spans = {span.get_attribute("textContent"): span for span in line.find_elements(By.CSS_SELECTOR, "span")}
    assert spans["red"].value_of_css_property("color") == "rgba(205, 49, 49, 1)"
    assert spans["bold orange"].value_of_css_property("color") == "rgba(255, 135, 0, 1)"
    assert spans["bold orange"].value_of_css_property("font-weight") == "700"
    assert spans["true"].value_of_css_property("color") == "rgba(10, 200, 30, 1)"
    assert spans["on blue"].value_of_css_property("background-color") == "rgba(36, 114, 200, 1)"
    assert "\x1b" not in browser.find_element(By.ID, "log").get_attribute("textContent")


# Escape sequences in their 8-bit (C1) forms and edge cases, each line as the tool printed it.
C1_LINES = [
    "\x9b31mred\x9b0m plain",
    "\x9b1;38;5;208mbold orange\x9bm \x9b2K\x9b?25lcursor hidden",
    "\x9d0;window title\x9c after osc",
    "\x9d8;;https://example.com\x07link\x9d8;;\x07 done",
    "\x90qsixel data\x9c after dcs",
    "\x98sos\x9c \x9epm\x9c \x9fapc\x9c after strings",
    "\x1b]8;;https://example.com\x1b\\link\x1b]8;;\x1b\\ 7-bit st",
    "\x1b(Bcharset \x1b7saved\x1b8 \x1b#8 \x1bPdcs\x1b\\ end",
    "\x9d0;unterminated title runs to the line's end",
    "\x9d0;cut\x1b[32mgreen after a cut string",
    "lone escape at the end \x1b",
]


def test_8_bit_escape_sequences_are_rendered_or_dropped_like_the_text_download(
    browser: WebDriver, viewer: Viewer, redis_url: str, build: str
) -> None:
    # GIVEN lines with 8-bit CSI / OSC / DCS / SOS / PM / APC sequences (and 7-bit ones beside them)
    ids = xadd_entries(
        redis_url, build, [*(entry("build", text) for text in C1_LINES), end_entry("build", "SUCCEEDED")]
    )
    # WHEN the viewer shows them
    browser.get(view_url(viewer.root, build))
    wait_for(browser, lambda d: all(i in rendered_ids(d) for i in ids), "the lines")
    # THEN each line reads as logs.txt's stripped text does (buildlogs.stream.ansi): no escape shown
    assert [_text_of(browser, i) for i in ids[: len(C1_LINES)]] == [strip_ansi(text) for text in C1_LINES]
    shown = browser.find_element(By.ID, "log").get_attribute("textContent") or ""
    assert not any(c in shown for c in "\x1b\x9b\x9c\x9d\x90\x98\x9e\x9f")
    # AND the 8-bit CSI's colours are applied
    red = browser.find_element(By.CSS_SELECTOR, f"[data-entry-id='{ids[0]}'] .text span")
    assert red.get_attribute("textContent") == "red"
    assert red.value_of_css_property("color") == "rgba(205, 49, 49, 1)"
    orange = browser.find_element(By.CSS_SELECTOR, f"[data-entry-id='{ids[1]}'] .text span")
    assert orange.get_attribute("textContent") == "bold orange"
    assert orange.value_of_css_property("color") == "rgba(255, 135, 0, 1)"
    green = browser.find_element(By.CSS_SELECTOR, f"[data-entry-id='{ids[9]}'] .text span")
    assert green.value_of_css_property("color") == "rgba(13, 188, 121, 1)"


def test_log_text_is_shown_as_text_never_as_html(
    browser: WebDriver, viewer: Viewer, redis_url: str, build: str
) -> None:
    # GIVEN lines that are HTML, one of them a script-running image
    texts = ["<img src=x onerror=alert(1)>", "<img src=x onerror=\"document.title='pwned'\">", "<b>bold?</b> &amp;"]
    ids = xadd_entries(redis_url, build, [entry("build", text) for text in texts])
    # WHEN the viewer shows them
    browser.get(view_url(viewer.root, build))
    wait_for(browser, lambda d: all(i in rendered_ids(d) for i in ids), "the HTML lines")
    # THEN each line reads exactly as written, no element came from it, and nothing ran
    assert [_text_of(browser, i) for i in ids] == texts
    assert browser.find_elements(By.CSS_SELECTOR, "#log img, #log b") == []
    assert browser.title != "pwned"
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 (reading it is the check)


def test_timestamps_toggle_and_the_download_link(
    browser: WebDriver, viewer: Viewer, redis_url: str, build: str
) -> None:
    # GIVEN a short log open in the viewer
    ids = xadd_entries(redis_url, build, [entry("build", "hello"), end_entry("build", "SUCCEEDED")])
    browser.get(view_url(viewer.root, build))
    wait_for(browser, lambda d: ids[0] in rendered_ids(d), "the line")
    stamp = browser.find_element(By.CSS_SELECTOR, f"[data-entry-id='{ids[0]}'] .ts")
    line = browser.find_element(By.CSS_SELECTOR, f"[data-entry-id='{ids[0]}']")
    # THEN the time is on hover (title) and hidden until the toggle shows it
    assert line.get_attribute("title").endswith("Z")
    assert not stamp.is_displayed()
    browser.find_element(By.ID, "toggle-timestamps").click()
    wait_for(browser, lambda d: stamp.is_displayed(), "the timestamp shown")
    assert len(stamp.text.split(":")) == 3
    # AND the download link is the log as text
    download = browser.find_element(By.ID, "download")
    assert download.get_attribute("href") == f"{viewer.root}/builds/{build}/logs.txt"
    assert download.get_attribute("download") == f"{build}.log"


def _loaded(driver: WebDriver) -> int:
    """How many entries the page holds (the log's data-loaded)."""
    return int(driver.execute_script("return Number(document.getElementById('log').dataset.loaded || 0)"))


def test_load_earlier_across_a_finished_stages_start_keeps_it_finished(
    browser: WebDriver, viewer: Viewer, redis_url: str, build: str
) -> None:
    # GIVEN a succeeded build whose last stage is longer than the first page (its start is not in the tail)
    ids = xadd_entries(redis_url, build, stage_lines("provision", ["sandbox ready"], duration_ms=2500))
    ids += xadd_entries(redis_url, build, stage_lines("build", [f"compiling {n}" for n in range(900)]))
    ids += xadd_entries(redis_url, build, [end_entry("build", "SUCCEEDED")])
    browser.get(view_url(viewer.root, build))
    wait_for(browser, lambda d: ids[-1] in rendered_ids(d), "the end of the log")
    wait_for(browser, lambda d: _section(d, "build").get("status") == "succeeded", "build marked passed")
    assert _loaded(browser) < len(ids)
    # WHEN "Load earlier" reads back across the build stage's stage_start
    browser.find_element(By.ID, "load-earlier").click()
    wait_for(browser, lambda d: _loaded(d) == len(ids), "the whole log loaded")
    # THEN the stage is still finished, with its mark and duration (a stage_start never undoes its end)
    build_section = _section(browser, "build")
    assert build_section["status"] == "succeeded"
    assert "✓" in build_section["text"]
    assert "1.2 s" in build_section["text"]
    assert _section(browser, "provision")["status"] == "succeeded"


def test_load_earlier_is_disabled_once_nothing_is_earlier(
    browser: WebDriver, viewer: Viewer, redis_url: str, build: str
) -> None:
    # GIVEN a finished log longer than the first page, open in the viewer
    ids = xadd_entries(redis_url, build, [entry("build", f"line {n}") for n in range(700)])
    ids += xadd_entries(redis_url, build, [end_entry("build", "SUCCEEDED")])
    browser.get(view_url(viewer.root, build))
    wait_for(browser, lambda d: ids[-1] in rendered_ids(d), "the end of the log")
    button = browser.find_element(By.ID, "load-earlier")
    # THEN "Load earlier" is enabled while lines before the view exist
    assert button.is_enabled()
    # WHEN it has loaded the log's first line
    button.click()
    wait_for(browser, lambda d: _loaded(d) == len(ids), "the whole log loaded")
    # THEN it is disabled (there is nothing earlier)
    wait_for(browser, lambda d: not d.find_element(By.ID, "load-earlier").is_enabled(), "load earlier disabled")


def test_load_earlier_is_disabled_when_the_whole_log_fits_the_first_page(
    browser: WebDriver, viewer: Viewer, redis_url: str, build: str
) -> None:
    # GIVEN a short finished log
    ids = xadd_entries(redis_url, build, [entry("build", "hello"), end_entry("build", "SUCCEEDED")])
    # WHEN the viewer opens it
    browser.get(view_url(viewer.root, build))
    wait_for(browser, lambda d: ids[-1] in rendered_ids(d), "the end of the log")
    # THEN "Load earlier" is disabled: the first page reached the log's start
    assert not browser.find_element(By.ID, "load-earlier").is_enabled()


def test_a_skipped_stage_is_shown_neutrally(browser: WebDriver, viewer: Viewer, redis_url: str, build: str) -> None:
    # GIVEN an iteration build that skipped Install (its stage_end marked skipped), then built
    banner = "--- Installing dependencies: skipped (no manifest changed) ---"
    ids = xadd_entries(
        redis_url,
        build,
        [
            entry("install", banner, "system", event="stage_start"),
            entry("install", "install finished", "system", event="stage_end", duration_ms=3, skipped="true"),
            *stage_lines("build", ["compiled"], duration_ms=2500),
            end_entry("build", "SUCCEEDED"),
        ],
    )
    # WHEN the viewer opens it
    browser.get(view_url(viewer.root, build))
    wait_for(browser, lambda d: ids[-1] in rendered_ids(d), "the end of the log")
    wait_for(browser, lambda d: _section(d, "build").get("status") == "succeeded", "build marked passed")
    # THEN Install reads as skipped, neither passed nor failed nor running
    wait_for(browser, lambda d: _section(d, "install").get("status") == "skipped", "install marked skipped")
    install = _section(browser, "install")
    assert "⤼ install · skipped" in install["text"]
    assert not any(mark in install["text"] for mark in "✓✗●")
    assert "✓ build · 2.5 s" in _section(browser, "build")["text"]


# Rewrites the status route's answer in the page (before its script runs): every stage gets a
# status the page does not know, one of them markup, one of them missing.
ODD_STATUSES = """
    const original = window.fetch;
    window.fetch = async (...args) => {
        const response = await original(...args);
        if (!/\\/builds\\/[^/]+$/.test(new URL(String(args[0]), location.href).pathname)) return response;
        const body = await response.json();
        const odd = ["<b>paused</b> for now", null, "queued"];
        (body.stages || []).forEach((stage, i) => { stage.status = odd[i % odd.length]; });
        return new Response(JSON.stringify(body), {status: response.status, headers: response.headers});
    };
"""


def test_a_stage_status_the_page_does_not_know_never_breaks_it(
    browser: WebDriver, viewer: Viewer, redis_url: str, build: str
) -> None:
    # GIVEN a build with three stages whose statuses the status route reports as unknown words
    ids = xadd_entries(redis_url, build, stage_lines("provision", ["ready"]))
    ids += xadd_entries(redis_url, build, stage_lines("install", ["installed"]))
    ids += xadd_entries(redis_url, build, [*stage_lines("build", ["compiled"]), end_entry("build", "SUCCEEDED")])
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": ODD_STATUSES})
    try:
        # WHEN the viewer opens it
        browser.get(view_url(viewer.root, build))
        wait_for(browser, lambda d: ids[-1] in rendered_ids(d), "the end of the log")
        wait_for(browser, lambda d: _section(d, "provision").get("status") == "<b>paused</b> for now", "odd status")
        # THEN each stage shows its status as text beside a neutral mark, and the lines are all there
        assert "• provision · <b>paused</b> for now · 1.2 s" in _section(browser, "provision")["text"]
        assert "• install · unknown" in _section(browser, "install")["text"]
        assert "• build · queued" in _section(browser, "build")["text"]
        assert browser.find_elements(By.CSS_SELECTOR, "#sections b, #log b") == []
        assert all(i in rendered_ids(browser) for i in ids)
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]})


def test_the_download_link_saves_the_log_as_text(
    browser: WebDriver, viewer: Viewer, redis_url: str, build: str, tmp_path: Path
) -> None:
    # GIVEN a short log open in the viewer, downloads going to a directory of the test's
    ids = xadd_entries(redis_url, build, [entry("build", "\x1b[32mhello\x1b[0m"), end_entry("build", "SUCCEEDED")])
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    browser.get(view_url(viewer.root, build))
    wait_for(browser, lambda d: ids[-1] in rendered_ids(d), "the end of the log")
    # WHEN the download link is clicked
    browser.find_element(By.ID, "download").click()
    # THEN the log is saved as plain text under the build's name
    saved = tmp_path / f"{build}.log"
    wait_for(browser, lambda d: saved.exists() and saved.read_text() == "hello\nBUILD SUCCEEDED\n", "the saved log")
    assert browser.find_element(By.ID, "status").get_attribute("data-state") != "error"


def test_a_live_log_too_big_to_download_says_why(
    browser: WebDriver, viewer: Viewer, redis_url: str, build: str
) -> None:
    # GIVEN a running build whose log is over the API's 5 MiB limit for logs.txt while live
    line = "x" * 100
    ids = xadd_entries(redis_url, build, (entry("build", f"{n:06d} {line}") for n in range(58_000)), batch=5000)
    browser.get(view_url(viewer.root, build))
    wait_for(browser, lambda d: ids[-1] in rendered_ids(d), "the end of the log")
    # WHEN the download link is clicked
    browser.find_element(By.ID, "download").click()
    # THEN the status bar says why there is no download (the API's 413 message)
    wait_for(browser, lambda d: "cannot download logs.txt" in page_status(d), "the download's failure")
    assert "MiB" in page_status(browser)
    assert browser.find_element(By.ID, "status").get_attribute("data-state") == "error"
