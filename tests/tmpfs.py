"""A small tmpfs for tests of a full disk (needs root; the test machines run tests as root)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_tmpfs(path: Path, size: str = "32m") -> Iterator[Path]:
    """Mount a tmpfs of `size` at `path` for the duration; skip if that is impossible.

    In CI (`CI=true`) a tmpfs that cannot be mounted fails the test instead: there, a skipped
    full-disk test would hide that it never ran.
    """
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        reason = f"cannot mount a tmpfs at {path}: {mounted.stderr.strip() or mounted.returncode}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
