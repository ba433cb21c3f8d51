"""How a node actor's process sets its priority: every thread, and the threads started after."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

# Run in a process of its own: a niceness raised here could not be lowered back without root.
SCRIPT = """
import os, threading
from dataplane.process import run_at_priority

def nice(tid):
    return os.getpriority(os.PRIO_PROCESS, tid)

go = threading.Event()
seen = {}
def before():
    seen["before"] = threading.get_native_id()
    go.wait()
def later():
    seen["later"] = nice(threading.get_native_id())
first = threading.Thread(target=before)
first.start()
while "before" not in seen:
    pass
run_at_priority(7)
second = threading.Thread(target=later)
second.start()
second.join()
print(nice(threading.get_native_id()), nice(seen["before"]), seen["later"])
go.set()
first.join()
"""


def test_every_thread_takes_the_niceness_and_new_threads_inherit_it() -> None:
    run = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    # The calling thread, a thread started before, and one started after.
    assert run.stdout.split() == ["7", "7", "7"]
