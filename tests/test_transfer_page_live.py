"""The transfer page in a real browser while a cast runs, with the test playing the worker
(tests/page_server.py): its fields and tree fill in without a reload. And the rate chart's
arithmetic in chart.js, run in the browser on known samples.

Playwright drives Debian's Chromium (/usr/bin/chromium); no Ray is needed.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import BASE_DIR, stop
from transfers.samples import MAX_SAMPLES, SAMPLE_SECONDS, add_sample

CHROMIUM = Path("/usr/bin/chromium")
STATIC = BASE_DIR / "castray_site" / "static" / "castray"
SCRIPTS = [STATIC / "chart.js", STATIC / "castray.js"]  # in the order base.html loads them
MiB = 1024 * 1024

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed at /usr/bin/chromium"),
]


class PageServer:
    """tests/page_server.py in a child process: its URL, its cast, and the worker's steps."""

    def __init__(self, process: subprocess.Popen[str], log: Path) -> None:
        self.process = process
        self.log = log
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = json.loads(self.next_line(timeout=60))
        self.url: str = ready["url"]
        self.transfer: int = ready["transfer"]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("page-server: "):
                self.lines.put(line.removeprefix("page-server: ").strip())

    def next_line(self, timeout: float) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("the page server did not answer:\n" + self.log.read_text()) from None

    def do(self, step: str, body: Any = None) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(step + (" " + json.dumps(body) if body is not None else "") + "\n")
        self.process.stdin.flush()
        answer = self.next_line(timeout=30)
        assert answer == f"ok {step}", answer


@pytest.fixture
def page_server(tmp_path: Path) -> Iterator[PageServer]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    log = tmp_path / "server.log"
    with open(log, "w") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.page_server", str(tmp_path / "data")],
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        try:
            yield PageServer(process, log)
        finally:
            stop(process)


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


def open_transfer_page(page_server: PageServer, page: Any) -> None:
    """Log in, open the cast's page, and wait until its live feed is connected."""
    from playwright.sync_api import expect

    page.goto(page_server.url + "/accounts/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "admin-password")
    page.click("button[type=submit]")
    page.wait_for_url(page_server.url + "/")
    page.goto(f"{page_server.url}/transfers/{page_server.transfer}/")
    expect(page.locator("#live-state")).to_have_text("live")


def test_a_running_casts_page_fills_in_without_a_reload(page_server: PageServer, page: Any) -> None:
    from playwright.sync_api import expect

    # Opened while the cast is queued: nothing is known yet.
    open_transfer_page(page_server, page)
    expect(page.locator("#tree-empty")).to_be_visible()
    page.evaluate("window.stillTheSamePage = true")
    row = {name: page.locator(f'#targets tr[data-node="{name}"]') for name in ("node_2", "node_3")}

    # The worker claims it, hears the file's size and checksum from the source, plans the tree.
    page_server.do("claim")
    expect(page.locator("#transfer-status")).to_have_text("running")
    tree = {"root": "node_1", "fan_out": 1, "edges": [["node_1", "node_2"], ["node_2", "node_3"]]}
    page_server.do("start", {"size": 100 * MiB, "sha256": "ab" * 32, "tree": tree, "chunk_size": MiB})
    page_server.do("parents", {"node_2": "node_1", "node_3": "node_2"})

    # The targets' From and Tries columns, the tree, the size and the checksum.
    # By their data-field, not their position: 2307cee put "vs-bound" before them.
    expect(row["node_2"].locator('[data-field="parent"]')).to_have_text("node_1")
    expect(row["node_3"].locator('[data-field="parent"]')).to_have_text("node_2")
    expect(row["node_2"].locator('[data-field="attempts"]')).to_have_text("1")
    expect(page.locator("#tree svg.tree g.tree-node")).to_have_count(3)
    expect(page.locator("#tree svg.tree path.tree-link")).to_have_count(2)
    expect(page.locator("#total-size")).to_have_text("100 MiB")
    expect(page.locator(".totals")).to_contain_text("sha256 abababababababab…")

    # Progress: the bars, the bytes received so far and the rate chart follow.
    now = time.time()
    rows = {
        "node_2": {"status": "receiving", "bytes_done": 40 * MiB, "bytes_received": 40 * MiB, "started": now - 1},
        "node_3": {"status": "receiving", "bytes_done": 20 * MiB, "bytes_received": 20 * MiB, "started": now - 1},
    }
    page_server.do("progress", {name: {**r, "updated": now} for name, r in rows.items()})
    expect(row["node_2"].locator(".bar")).to_have_attribute("aria-valuenow", "40")
    expect(row["node_3"].locator(".bar")).to_have_attribute("aria-valuenow", "20")
    expect(page.locator("#total-received")).to_have_text("60 MiB")
    # The source's bytes are recorded as a round ends: not "0 B" meanwhile.
    expect(page.locator("#source-bytes")).to_have_text("—")
    expect(page.locator("#rate-chart svg path.line")).to_have_count(1)
    assert page.evaluate("window.stillTheSamePage") is True


def test_a_directory_casts_files_done_follow_its_bytes(page_server: PageServer, page: Any) -> None:
    from playwright.sync_api import expect

    open_transfer_page(page_server, page)
    # The kind is known once the source answers: until then no file counts are shown.
    expect(page.locator("#total-files")).to_be_hidden()
    page.evaluate("window.stillTheSamePage = true")
    files = {
        name: page.locator(f'#targets tr[data-node="{name}"] [data-field="files"]') for name in ("node_2", "node_3")
    }
    expect(files["node_2"]).to_be_hidden()

    page_server.do("claim")
    manifest = [[f"shard-{i}.bin", 10 * MiB, f"{i:064x}"] for i in range(12)]
    tree = {"root": "node_1", "fan_out": 2, "edges": [["node_1", "node_2"], ["node_1", "node_3"]]}
    page_server.do(
        "start",
        {"size": 120 * MiB, "sha256": "cd" * 32, "tree": tree, "chunk_size": MiB, "files": 12, "manifest": manifest},
    )
    expect(page.locator("#total-files")).to_contain_text("a directory of 12 files")
    expect(files["node_2"]).to_have_text("0 / 12 files")

    now = time.time()
    rows = {
        "node_2": {"status": "receiving", "bytes_done": 30 * MiB, "bytes_received": 30 * MiB, "files_done": 3},
        "node_3": {"status": "receiving", "bytes_done": 70 * MiB, "bytes_received": 10 * MiB, "files_done": 7},
    }
    page_server.do("progress", {name: {**r, "started": now - 1, "updated": now} for name, r in rows.items()})
    expect(files["node_2"]).to_have_text("3 / 12 files")
    expect(files["node_3"]).to_have_text("7 / 12 files")
    expect(page.locator('#targets tr[data-node="node_3"] [data-field="bytes"]')).to_have_text("70 MiB")
    page_server.do(
        "progress", {"node_2": {**rows["node_2"], "bytes_done": 50 * MiB, "files_done": 5, "updated": now + 1}}
    )
    expect(files["node_2"]).to_have_text("5 / 12 files")
    assert page.evaluate("window.stillTheSamePage") is True


def load_script(page: Any) -> None:
    page.set_content("<!doctype html><html><body></body></html>")
    for script in SCRIPTS:
        page.add_script_tag(path=str(script))


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
