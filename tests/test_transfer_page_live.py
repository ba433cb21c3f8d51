"""The transfer page's rate chart: castray.js's arithmetic, run in a real browser on known
samples.

Playwright drives Debian's Chromium (/usr/bin/chromium); no Ray is needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import BASE_DIR
from transfers.samples import MAX_SAMPLES, SAMPLE_SECONDS, add_sample

CHROMIUM = Path("/usr/bin/chromium")
SCRIPT = BASE_DIR / "castray_site" / "static" / "castray" / "castray.js"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed at /usr/bin/chromium"),
]


@pytest.fixture
def page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(15_000)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        browser.close()
        assert not errors, errors


def load_script(page: Any) -> None:
    page.set_content("<!doctype html><html><body></body></html>")
    page.add_script_tag(path=str(SCRIPT))


def test_the_rate_chart_sums_each_targets_rate_between_its_samples(page: Any) -> None:
    load_script(page)
    steps = page.evaluate(
        "(s) => window.castray.rateSteps(s)",
        [[[100, 0], [101, 100], [102, 300]], [[100.5, 0], [101.5, 100]]],
    )
    assert steps == [[0, 0.5, 100], [0.5, 1, 200], [1, 1.5, 300], [1.5, 2, 200]]


def test_the_end_of_a_cast_draws_no_spike(page: Any) -> None:
    # 137 MB/s measured every 0.25 s; the last 12 MB arrive 0.09 s after the last report. The
    # report of the finish comes whenever it comes: its sample is timed by the finish.
    speed, size = 137e6, 400_000_000
    samples: list[list[float]] = []
    t = 0.0
    while speed * t < size:
        add_sample(samples, 1000 + t, int(speed * t))
        t += 0.25
    add_sample(samples, 1000 + size / speed, size)
    load_script(page)
    steps = page.evaluate("(s) => window.castray.rateSteps(s)", [samples])
    assert max(rate for _, _, rate in steps) == pytest.approx(speed, rel=0.01)
    assert steps[-1][1] == pytest.approx(size / speed, abs=0.001)


def test_the_page_keeps_samples_by_the_servers_rule(page: Any) -> None:
    # Live samples are added in the browser as the server adds them (transfers/samples.py),
    # so a page that watched a cast and one loaded after it draw the same chart.
    arriving = [[1000 + i * 0.125, i * 1000] for i in range(3000)]
    kept: list[list[float]] = []
    for when, value in arriving:
        add_sample(kept, when, int(value))
    load_script(page)
    in_page = page.evaluate(
        "([all, spacing, max]) => { const s = []; for (const x of all) window.castray.addSample(s, x, spacing, max);"
        " return s; }",
        [arriving, SAMPLE_SECONDS, MAX_SAMPLES],
    )
    assert in_page == kept
