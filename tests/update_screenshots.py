"""Refresh the README's screenshots (castray_site/static/castray/screenshots/).

    .venv/bin/python tests/update_screenshots.py

Runs the browser test with its screenshots pointed at the README's copies; an ordinary test
run writes them to a temporary directory and checks that these stay untouched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
TEST = "tests/test_browser.py::test_cast_from_the_cast_page_and_watch_it_finish_live"


def main() -> int:
    # README_SCREENSHOTS and SCREENSHOTS_ENV of tests/test_browser.py.
    target = BASE_DIR / "castray_site" / "static" / "castray" / "screenshots"
    env = {**os.environ, "CASTRAY_SCREENSHOTS_DIR": str(target)}
    code = subprocess.call(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST], cwd=BASE_DIR, env=env
    )
    if code == 0:
        print(f"Screenshots updated in {target.relative_to(BASE_DIR)}/; review and commit them.")
    return code


if __name__ == "__main__":
    sys.exit(main())
