"""A real browser against the real server and worker: log in, generate a file, cast it to two
nodes from the cast page, and watch it finish live; then every page on a phone's screen, and the
API docs with nothing fetched from outside. Screenshots of the main pages go to the test's
temporary directory; `python tests/update_screenshots.py` runs this test to refresh the
README's copies (castray_site/static/castray/screenshots/).

Playwright drives Debian's Chromium (/usr/bin/chromium); browsers are never downloaded.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import sha256_of
from tests.servers import BASE_DIR, RunningServer, castray_up

CHROMIUM = Path("/usr/bin/chromium")
# The README's screenshots, tracked in git: a test run must leave them alone.
README_SCREENSHOTS = BASE_DIR / "castray_site" / "static" / "castray" / "screenshots"
# Set by tests/update_screenshots.py to README_SCREENSHOTS; otherwise the test's tmp_path.
SCREENSHOTS_ENV = "CASTRAY_SCREENSHOTS_DIR"
PHONE = {"width": 390, "height": 844}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.ray,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed at /usr/bin/chromium"),
]


@pytest.fixture
def server(ray_session, tmp_path: Path) -> Iterator[RunningServer]:
    with castray_up(tmp_path) as running:
        yield running


@pytest.fixture
def page(server: RunningServer) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(30_000)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # CastRay runs on networks without internet: no page may fetch anything from elsewhere.
        outside: list[str] = []
        page.on("request", lambda r: None if r.url.startswith((server.url, "data:")) else outside.append(r.url))
        yield page
        browser.close()
        assert not errors, errors
        assert not outside, outside


@pytest.fixture
def screenshots(tmp_path: Path) -> Iterator[Path]:
    """Where this run's screenshots go; the README's copies are checked untouched after."""
    target = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path / "screenshots")
    target.mkdir(parents=True, exist_ok=True)
    before = _digests(README_SCREENSHOTS)
    yield target
    if target.resolve() != README_SCREENSHOTS.resolve():
        assert _digests(README_SCREENSHOTS) == before, "the test run rewrote the README's screenshots"


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.glob("*.png"))}


# Run in the page: every visible table either fits its container or scrolls inside it, and
# nothing sticks out past the screen's right edge (the page itself never scrolls sideways).
# The tables named in `mustFit` show their phone columns whole, with no scrolling at all.
CLIPPED_TABLES = """(mustFit) => {
  const width = document.documentElement.clientWidth;
  const problems = [];
  if (document.documentElement.scrollWidth > width) {
    // Name the innermost elements that stick out, leaving out those inside a scrolling box.
    const out = (e) => e.getBoundingClientRect().right > width + 0.5;
    const inScroller = (e) => {
      for (let p = e.parentElement; p; p = p.parentElement) {
        if (["auto", "scroll"].includes(getComputedStyle(p).overflowX)) return true;
      }
      return false;
    };
    const wide = [...document.body.querySelectorAll("*")].filter(
      (e) => out(e) && ![...e.children].some(out) && !inScroller(e)
    );
    const names = wide.slice(0, 3).map((e) => `${e.tagName.toLowerCase()}: ${e.textContent.trim().slice(0, 40)}`);
    const pageWidth = document.documentElement.scrollWidth;
    problems.push(`the page is ${pageWidth}px wide on a ${width}px screen: ${names.join("; ")}`);
  }
  for (const table of document.querySelectorAll("table")) {
    if (!table.offsetParent) continue;
    const name = table.id || (table.querySelector("th, td") || {}).textContent || "a table";
    const box = table.parentElement;
    const scrolls = ["auto", "scroll"].includes(getComputedStyle(box).overflowX);
    if (table.scrollWidth > box.clientWidth && (!scrolls || mustFit.includes(table.id))) {
      problems.push(`${name}: ${table.scrollWidth}px in a ${box.clientWidth}px container`);
    }
    const right = box.getBoundingClientRect().right;
    if (right > width + 0.5) problems.push(`${name}: its container ends at ${right}px, past the screen`);
  }
  return problems;
}"""


# Nodes (dashboard and node list), a cast's targets, the history: what people check on a phone.
MUST_FIT = ["node-table", "targets", "transfer-table"]


def phone_problems(page, url: str) -> list[str]:  # type: ignore[no-untyped-def]
    page.goto(url)
    page.wait_for_load_state("load")
    return page.evaluate(CLIPPED_TABLES, MUST_FIT)


def test_cast_from_the_cast_page_and_watch_it_finish_live(server: RunningServer, page, screenshots: Path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    def shoot(name: str) -> None:
        page.screenshot(path=str(screenshots / f"{name}.png"))

    # Log in with the account castray_up created.
    page.goto(server.url + "/")
    assert "/accounts/login/" in page.url
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", server.admin_password)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/")

    # The dashboard learns over /ws that the three demo nodes are online.
    expect(page.locator("#nodes-online")).to_have_text("3", timeout=90_000)
    expect(page.locator("#live-state")).to_have_text("live")

    # Cast page: generate 256 MB on node_1 and cast it to node_2 and node_3.
    page.click("nav a[href='/cast/']")
    page.select_option("#id_source", "node_1")
    page.check("input[name=file_source][value=generate]")
    page.click(".chip[data-size='10MB']")
    page.fill("#id_gen_size", "256MB")
    page.select_option("#id_gen_content", "random")
    page.fill("#id_gen_name", "browser.bin")
    page.check("input[name=targets][value=node_2]")
    page.check("input[name=targets][value=node_3]")
    assert page.is_disabled("input[name=targets][value=node_1]")  # the source is not a target
    page.fill("#id_fan_out", "1")
    shoot("cast")
    page.click("#cast-submit")
    page.wait_for_url(re.compile(r"/transfers/\d+/$"))
    transfer_url = page.url

    # Both bars reach 100% without a reload: the marker set now survives to the end.
    page.evaluate("window.stillTheSamePage = true")
    bars = page.locator("#targets .bar")
    expect(bars).to_have_count(2)
    for i in range(2):
        expect(bars.nth(i)).to_have_attribute("aria-valuenow", "100", timeout=120_000)
    expect(page.locator("#transfer-status")).to_have_text("completed", timeout=30_000)
    assert page.evaluate("window.stillTheSamePage") is True
    assert page.evaluate("window.castrayMessages") >= 1
    assert page.url == transfer_url

    # The tree (node_1 -> node_2 -> node_3, fan-out 1) and the rate chart are drawn.
    expect(page.locator("#tree svg.tree g.tree-node")).to_have_count(3, timeout=30_000)
    expect(page.locator("#tree svg.tree path.tree-link")).to_have_count(2)
    expect(page.locator("#rate-chart svg path.line")).to_have_count(1, timeout=30_000)
    expect(page.locator("#total-duration")).not_to_have_text("—", timeout=30_000)
    shoot("transfer")

    source = server.data_dir / "storage" / "node_1" / "browser.bin"
    assert source.stat().st_size == 256 * 1024 * 1024
    for target in ("node_2", "node_3"):
        assert sha256_of(server.data_dir / "storage" / target / "browser.bin") == sha256_of(source)

    # A second cast of the same file from node_2 to every online node: node_1 already holds
    # it (skipped at once), node_3 too.
    page.goto(server.url + "/cast/")
    page.select_option("#id_source", "node_2")
    mine = page.locator("#id_file_name optgroup[data-node=node_2] option[value='browser.bin']")
    page.select_option("#id_file_name", element=mine.element_handle())
    page.check("input[name=target_choice][value=all]")
    page.click("#cast-submit")
    page.wait_for_url(re.compile(r"/transfers/\d+/$"))
    expect(page.locator("#transfer-status")).to_have_text("completed", timeout=120_000)
    expect(page.locator("#targets [data-field=status]")).to_have_text(["skipped", "skipped"])

    # The other main pages, for the README.
    page.goto(server.url + "/")
    expect(page.locator("#live-state")).to_have_text("live")
    shoot("dashboard")
    page.goto(server.url + "/nodes/")
    expect(page.locator("#node-table tbody tr")).to_have_count(3)
    shoot("nodes")
    page.goto(server.url + "/transfers/")
    expect(page.locator("td.file", has_text="browser.bin")).to_have_count(2)
    shoot("history")

    # Every page on a phone's screen: tables scroll inside their cards rather than being cut off.
    page.set_viewport_size(PHONE)
    node_pages = [f"/nodes/{name}/" for name in ("node_1", "node_2", "node_3")]
    pages = ["/", "/cast/", "/transfers/", transfer_url.removeprefix(server.url), "/nodes/", *node_pages, "/clusters/"]
    problems = {path: phone_problems(page, server.url + path) for path in pages}
    assert not any(problems.values()), problems

    # The API docs work without internet: Swagger UI is served from here (no request went
    # elsewhere: see the page fixture) and draws the schema.
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(server.url + "/api/docs/")
    assert page.evaluate("typeof SwaggerUIBundle") == "function"
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("CastRay API", timeout=30_000)
