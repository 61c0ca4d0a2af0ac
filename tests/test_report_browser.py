"""The HTML report as a person sees it, in headless Chromium (selenium + chromedriver).

Needs the `chromium` and `chromium-driver` Debian packages and `selenium`;
skipped without them. Set LLMSCEN_UPDATE_SCREENSHOT=1 to refresh
docs/report-screenshot.png from the real run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_report_samples import XSS_OUTPUT, build_results, three_slos

from llmscen.report.html import write_html

pytestmark = pytest.mark.slow
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))
                 if p), None)
CHROMEDRIVER = shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    # CI installs them (scripts/install-test-deps.sh): there a missing browser is a failure
    if os.environ.get("CI"):
        raise RuntimeError("chromium and chromedriver are missing; run scripts/install-test-deps.sh")
    pytest.skip("needs chromium and chromedriver", allow_module_level=True)

REPO = Path(__file__).resolve().parent.parent
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument("--window-size=1280,1400")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def real_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of a short run of scenarios/peak.yaml against the bundled simulator."""
    out = tmp_path_factory.mktemp("peak")
    proc = subprocess.run(
        [sys.executable, "-m", "llmscen.cli.main", "run", "scenarios/peak.yaml", "-q",
         "--set", "phases.0.duration=1s", "--set", "phases.1.duration=3s",
         "--set", "phases.2.duration=4s", "--set", "phases.3.duration=4s", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / "report.html"


def open_page(browser: Any, path: Path) -> None:
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "", "features": []})
    browser.get(path.as_uri())
    browser.get_log("browser")   # start each page with an empty console


def severe_console_messages(browser: Any) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_a_person_sees_the_verdict_slos_and_charts(browser: Any, real_report: Path,
                                                   tmp_path: Path) -> None:
    open_page(browser, real_report)
    word = browser.find_element(By.CSS_SELECTOR, ".verdict .word")
    assert word.is_displayed() and word.text == "PASSED"
    assert float(word.value_of_css_property("font-size").removesuffix("px")) >= 28

    rows = browser.find_elements(By.CSS_SELECTOR, "#slos tbody tr")
    assert len(rows) == 6
    assert rows[0].text.startswith("PASS latency.p95 < 5s whole run")
    assert all(r.find_element(By.CSS_SELECTOR, ".badge").text == "PASS" for r in rows)

    drawn = []
    for svg in browser.find_elements(By.CSS_SELECTOR, "svg.chart"):
        lines = svg.find_elements(By.CSS_SELECTOR, "path.line")
        if not (svg.is_displayed() and lines):
            continue
        length = browser.execute_script("return arguments[0].getTotalLength()", lines[0])
        stroke = browser.execute_script("return getComputedStyle(arguments[0]).stroke", lines[0])
        if svg.size["width"] > 300 and svg.size["height"] > 120 and length > 50 \
                and stroke not in ("none", ""):
            drawn.append(svg.get_attribute("aria-label"))
    assert {"Requests per second", "Latency over time", "Latency distribution"} <= set(drawn)

    # nothing was fetched and nothing was refused: the page is whole on its own
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    assert severe_console_messages(browser) == []

    shot = tmp_path / "report.png"
    browser.set_window_size(1280, 2000)
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 50_000
    browser.set_window_size(1280, 1400)
    if os.environ.get("LLMSCEN_UPDATE_SCREENSHOT"):
        shutil.copyfile(shot, REPO / "docs" / "report-screenshot.png")


def test_model_output_is_shown_as_text_and_never_runs(browser: Any, tmp_path: Path) -> None:
    page = tmp_path / "xss.html"
    write_html(build_results(errors_every=9, failing_check=True, slos=three_slos()), page)
    open_page(browser, page)
    assert browser.execute_script("return window.__xss") is None
    output = browser.find_element(By.CSS_SELECTOR, "pre.output")
    assert output.is_displayed() and output.text == XSS_OUTPUT
    assert browser.execute_script(
        "return document.querySelectorAll('main script, main img').length") == 0
    assert browser.find_element(By.CSS_SELECTOR, ".verdict .word").text == "FAILED"
    failed = browser.find_elements(By.CSS_SELECTOR, "#slos tr.failed")
    assert len(failed) == 2
    assert severe_console_messages(browser) == []


def test_our_own_script_runs_under_the_policy(browser: Any, tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    write_html(build_results(), page)
    open_page(browser, page)
    closed = "return [...document.querySelectorAll('details')].filter(d => !d.open).length"
    assert browser.execute_script(closed) == 2    # all expectations held; more metrics
    browser.execute_script("window.dispatchEvent(new Event('beforeprint'))")
    assert browser.execute_script(closed) == 0    # printing shows every section


def test_dark_and_print_styles(browser: Any, tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    write_html(build_results(), page)
    open_page(browser, page)
    background = "return getComputedStyle(document.body).backgroundColor"
    assert browser.execute_script(background) == "rgb(255, 255, 255)"
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    assert browser.execute_script(background) == "rgb(13, 17, 23)"
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print", "features": [
        {"name": "prefers-color-scheme", "value": "dark"}]})
    assert browser.execute_script(background) == "rgb(255, 255, 255)"
    toc = browser.find_element(By.CSS_SELECTOR, "nav.toc")
    assert not toc.is_displayed()
