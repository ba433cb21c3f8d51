"""`pip install ./client` into a fresh virtualenv with neither Django nor Ray, then `castray --help`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "client"


def test_the_client_installs_alone_and_its_command_runs(tmp_path: Path) -> None:
    # A copy without build leftovers, as a fresh checkout has it: a stale build/ once hid a
    # subpackage missing from the wheel.
    source = shutil.copytree(CLIENT, tmp_path / "client", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    for absent in ("django", "ray", "rest_framework"):
        probe = subprocess.run([str(python), "-c", f"import {absent}"], capture_output=True, text=True)
        assert probe.returncode != 0, f"{absent} got installed with the client"

    result = subprocess.run([str(venv / "bin" / "castray"), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in ("login", "nodes", "cast", "status", "history", "get", "put", "send", "inbox"):
        assert command in result.stdout
    result = subprocess.run(
        [
            str(python),
            "-c",
            "from castray_client import Client, Cast, Node, Target, Message, CastRayError; import castray_client.ray",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
