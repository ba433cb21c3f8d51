"""tests/run.sh, the README's test command: both variants always run, each gets a summary line,
and the exit status is non-zero when either failed.

The script runs in a copy of the checkout's layout whose `.venv/bin/python` is a stand-in:
pip does nothing, the service check answers as told, and pytest passes or fails per variant.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent

FAKE_PYTHON = """#!/usr/bin/env bash
# -m pip: nothing to install. -m pytest: the variant's outcome. "-": the service check.
case "$1 $2" in
  "-m pip") exit 0 ;;
  "-m pytest")
    if [ -n "${DATABASE_URL:-}" ]; then echo "pytest on postgres"; exit "$FAKE_PG_EXIT"; fi
    echo "pytest on sqlite"; exit "$FAKE_DEFAULT_EXIT" ;;
esac
cat >/dev/null
exit "$FAKE_SERVICES_EXIT"
"""


def run(tmp_path: Path, *, default: int, pg: int, services: int = 0, ci: str = "") -> subprocess.CompletedProcess[str]:
    (tmp_path / "tests").mkdir(exist_ok=True)
    shutil.copy(BASE_DIR / "tests" / "run.sh", tmp_path / "tests" / "run.sh")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True, exist_ok=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    env = {
        **os.environ,
        "FAKE_DEFAULT_EXIT": str(default),
        "FAKE_PG_EXIT": str(pg),
        "FAKE_SERVICES_EXIT": str(services),
        "CI": ci,
    }
    return subprocess.run(
        ["bash", "tests/run.sh"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("default", "pg", "code"),
    [(0, 0, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1)],
)
def test_both_variants_run_and_each_is_summarised(tmp_path: Path, default: int, pg: int, code: int) -> None:
    result = run(tmp_path, default=default, pg=pg)
    out = result.stdout
    assert "pytest on sqlite" in out and "pytest on postgres" in out, out
    assert result.returncode == code, out + result.stderr
    summary = out[out.rindex("== Summary") :]
    assert ("FAILED" if default else "passed") in summary.splitlines()[1], summary
    assert ("FAILED" if pg else "passed") in summary.splitlines()[2], summary


def test_missing_services_are_reported_and_fail_only_on_ci(tmp_path: Path) -> None:
    result = run(tmp_path, default=0, pg=0, services=1)
    assert result.returncode == 0 and "pytest on postgres" not in result.stdout
    assert "NOT RUN" in result.stdout[result.stdout.rindex("== Summary") :]
    result = run(tmp_path, default=0, pg=0, services=1, ci="true")
    assert result.returncode == 1
    assert "FAILED" in result.stdout[result.stdout.rindex("== Summary") :]
