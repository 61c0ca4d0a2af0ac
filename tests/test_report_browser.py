"""The HTML report as a person sees it, in headless Chromium (selenium + chromedriver).

Needs the `chromium` and `chromium-driver` Debian packages and `selenium`;
skipped without them. Set LLMSCEN_UPDATE_SCREENSHOT=1 to refresh the
screenshots in docs/ (report-chat.png, report-flux.png, report-flow.png) from
the real runs.
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
from servers.api_server import serve
from test_report_samples import XSS_OUTPUT, build_results, three_slos

from llmscen.report.html import write_html

pytestmark = pytest.mark.slow
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

from llmscen.metrics.results import RunResults  # noqa: E402

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


def run_scenario(out: Path, scenario: str, *args: str, codes: tuple[int, ...] = (0,)) -> Path:
    proc = subprocess.run(
        [sys.executable, "-m", "llmscen.cli.main", "run", scenario, "-q", "--out", str(out),
         *args], cwd=REPO, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode in codes, proc.stdout + proc.stderr
    return out / "report.html"


@pytest.fixture(scope="module")
def real_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of a short run of scenarios/peak.yaml against the bundled simulator."""
    return run_scenario(tmp_path_factory.mktemp("peak"), "scenarios/peak.yaml",
                        "--set", "phases.0.duration=1s", "--set", "phases.1.duration=3s",
                        "--set", "phases.2.duration=4s", "--set", "phases.3.duration=4s",
                        # a rate a shared 2-core machine keeps up with, so the run is judged
                        "--set", "phases.2.arrival_rate=40")


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

    screenshot(browser, tmp_path, "report-chat.png")


def screenshot(browser: Any, tmp_path: Path, name: str, height: int = 2400) -> None:
    """The top of the page as a person sees it first; kept in docs/ when asked to."""
    shot = tmp_path / name
    browser.execute_script("window.scrollTo(0, 0)")
    browser.set_window_size(1280, height)
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 50_000
    browser.set_window_size(1280, 1400)
    if os.environ.get("LLMSCEN_UPDATE_SCREENSHOT"):
        shutil.copyfile(shot, REPO / "docs" / name)


def texts(browser: Any, css: str) -> list[str]:
    """The text of every match, shown or folded away."""
    return [" ".join((e.get_attribute("textContent") or "").split())
            for e in browser.find_elements(By.CSS_SELECTOR, css)]


def displayed_charts(browser: Any) -> list[str]:
    return [svg.get_attribute("aria-label") for svg in
            browser.find_elements(By.CSS_SELECTOR, "#time svg.chart") if svg.is_displayed()]


def test_the_outcome_context_and_load_of_a_chat_run(browser: Any, real_report: Path) -> None:
    results = RunResults.load(real_report.with_name("results.json"))
    assert results.outcome is not None
    peak = results.phase("peak")      # every worker's share adds up to what was asked
    assert peak is not None and peak.offered_rate == 40 and peak.planned[0][1] == 40
    open_page(browser, real_report)
    cases = browser.find_elements(By.CSS_SELECTOR, "#cases tr.case")
    assert len(cases) == len(results.outcome.cases) >= 10
    assert all(not c.is_displayed() for c in cases)          # all passed: folded away
    browser.find_element(By.CSS_SELECTOR, "#cases summary").click()
    assert all(c.is_displayed() for c in cases)
    assert {c.find_element(By.CSS_SELECTOR, ".badge").text for c in cases} == {"PASS"}
    assert "codegen: python_syntax" in texts(browser, "#cases td.name")

    context = browser.find_element(By.ID, "run").text
    (target,) = results.meta.targets
    assert target.url and target.url.startswith("http://127.0.0.1:") and target.url in context
    assert "model sim-model" in context and "server: llmscen openai-sim" in context
    assert "CPython" in context and "llmscen" in context and "vllm · llmscen" in context
    source = browser.find_element(By.CSS_SELECTOR, "pre.scenario-source")
    assert not source.is_displayed()
    browser.find_element(By.CSS_SELECTOR, "#run details summary").click()
    assert source.is_displayed() and "arrival_rate: 100" in source.text

    # tiles of an LLM run
    labels = texts(browser, ".figure .label")
    assert labels[:4] == ["Requests", "Success rate", "Throughput", "Latency p50"]
    assert "TTFT p50" in labels and "Images per second" not in labels

    # the whole run: asked-for load beside what was achieved, users, error-free
    browser.find_element(By.ID, "time").location_once_scrolled_into_view  # noqa: B018
    shown = displayed_charts(browser)
    assert shown[:2] == ["Requests per second", "Users and requests in flight"]
    assert "TTFT over time" in shown and "Error rate over time" not in shown
    rps = browser.find_element(By.CSS_SELECTOR, '#set-all svg[aria-label="Requests per second"]')
    assert rps.find_elements(By.CSS_SELECTOR, "path.line.dash")          # asked for
    legend = rps.find_element(By.XPATH, "./ancestor::figure").find_elements(
        By.CSS_SELECTOR, "ul.legend li")
    assert [li.text for li in legend] == ["asked for", "ok"]
    users = browser.find_element(By.CSS_SELECTOR,
                                 '#set-all svg[aria-label="Users and requests in flight"]')
    assert {li.text for li in users.find_element(By.XPATH, "./ancestor::figure")
            .find_elements(By.CSS_SELECTOR, "ul.legend li")} == \
        {"users asked for", "users running", "in flight"}

    # per request: the same charts for each, one scope at a time
    buttons = browser.find_elements(By.CSS_SELECTOR, "#time button.scope")
    assert [b.text for b in buttons] == ["whole run", "codegen · request",
                                         "short-answer · request"]
    buttons[2].click()
    assert browser.find_element(By.ID, "set-request-1").is_displayed()
    assert not browser.find_element(By.ID, "set-all").is_displayed()
    assert displayed_charts(browser)[:2] == ["Requests per second", "Latency over time"]
    buttons[0].click()
    assert browser.find_element(By.ID, "set-all").is_displayed()
    assert severe_console_messages(browser) == []


def test_series_toggle_and_zoom(browser: Any, real_report: Path) -> None:
    open_page(browser, real_report)
    chart = browser.find_element(By.CSS_SELECTOR, '#set-all svg[aria-label="Latency over time"]')
    chart.location_once_scrolled_into_view  # noqa: B018
    figure = chart.find_element(By.XPATH, "./ancestor::figure")
    p99 = figure.find_element(By.XPATH, './/ul[@class="legend"]/li[.="p99"]')
    line = chart.find_element(By.CSS_SELECTOR, f'path.line[data-series="{p99.get_attribute("data-series")}"]')
    assert line.value_of_css_property("display") != "none"
    p99.click()
    assert line.value_of_css_property("display") == "none" and "off" in p99.get_attribute("class")
    p99.click()
    assert line.value_of_css_property("display") != "none"

    def ticks(svg: Any) -> list[str]:
        return [t.text for t in svg.find_elements(By.CSS_SELECTOR, "g.xticks text")]

    before = ticks(chart)
    assert before[0] == "0s"
    reset = browser.find_element(By.CSS_SELECTOR, "#time .reset-zoom")
    assert not reset.is_displayed()
    width = chart.size["width"]
    ActionChains(browser).move_to_element_with_offset(chart, int(-width * 0.1), 0) \
        .click_and_hold().move_by_offset(int(width * 0.25), 0).release().perform()
    zoomed = browser.find_elements(By.CSS_SELECTOR, "#time svg.chart.zoomed")
    every = browser.find_elements(By.CSS_SELECTOR, '#time svg.chart[data-zoom="x"]')
    assert zoomed and len(zoomed) == len(every)        # every time chart follows
    after = ticks(chart)
    assert after != before and after[0] != "0s"
    view = [float(v) for v in chart.get_attribute("data-view").split(",")]
    assert 0 < view[0] < view[1] < float(chart.get_attribute("data-hi"))
    assert reset.is_displayed()
    reset.click()
    assert not browser.find_elements(By.CSS_SELECTOR, "#time svg.chart.zoomed")
    assert ticks(chart) == before and not reset.is_displayed()
    assert severe_console_messages(browser) == []


@pytest.mark.triton
def test_a_flux_report_shows_images_and_tensor_checks(browser: Any, tmp_path: Path) -> None:
    pytest.importorskip("pytriton")
    page = run_scenario(tmp_path / "flux", "scenarios/flux.yaml", "--workers", "1",
                        "--set", "phases.1.duration=4s", codes=(0, 4))
    results = RunResults.load(page.with_name("results.json"))
    open_page(browser, page)
    figures = {f.find_element(By.CSS_SELECTOR, ".label").text:
               f.find_element(By.CSS_SELECTOR, ".value").text
               for f in browser.find_elements(By.CSS_SELECTOR, ".figure")}
    assert "IMAGES PER SECOND" in figures and figures["IMAGES PER SECOND"].endswith("/s")
    checks = [c for c in results.checks if c.expectation in ("outputs", "batch_consistent")]
    total = sum(c.passed + c.failed for c in checks)
    assert figures["TENSOR CHECKS"] == f"{sum(c.passed for c in checks):,} of {total:,}"
    assert "TTFT P50" not in figures and "ITL P50" not in figures
    shown = displayed_charts(browser)
    assert "TTFT over time" not in shown and "Output tokens per second" not in shown
    assert "Requests per second" in shown
    titles = texts(browser, "#distributions h3")
    assert not any(t.startswith(("Time to first token", "Inter-token")) for t in titles)
    context = browser.find_element(By.ID, "run").text
    assert "model flux" in context and "server: triton" in context
    cases = texts(browser, "#cases td.name")
    assert "batch-of-three: batch_consistent" in cases and "empty-prompt: error" in cases
    assert severe_console_messages(browser) == []
    screenshot(browser, tmp_path, "report-flux.png", height=1800)


def test_a_flow_report_has_each_step_and_request(browser: Any, tmp_path: Path) -> None:
    with serve() as (url, _state):
        page = run_scenario(tmp_path / "flow", "scenarios/login-flow.yaml", "--workers", "1",
                            "--target", f"api={url}", "--set", "phases.0.duration=4s",
                            "--set", "requests.0.steps.1.think=50ms")
    open_page(browser, page)
    assert browser.find_element(By.CSS_SELECTOR, ".verdict .word").text == "PASSED"
    browser.find_element(By.CSS_SELECTOR, "#cases summary").click()
    cases = texts(browser, "#cases td.name")
    assert "login-then-models" in cases and "login-then-models.models: json_schema" in cases
    buttons = texts(browser, "#time button.scope")
    assert buttons == ["whole run", "login-then-models · request", "health · request"]
    labels = texts(browser, ".figure .label")
    assert "Latency p50" in labels and "TTFT p50" not in labels     # HTTP: no tokens
    assert "TTFT over time" not in displayed_charts(browser)
    context = browser.find_element(By.ID, "run").text
    assert url.rstrip("/") in context and "http · llmscen" in context
    assert severe_console_messages(browser) == []
    screenshot(browser, tmp_path, "report-flow.png", height=1800)


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
    assert browser.execute_script(closed) == 3    # every case and expectation held; more metrics
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
