"""How a node actor's process is set up before it moves bytes."""

from __future__ import annotations

import ctypes
import ctypes.util
import os


def return_freed_memory_to_the_os() -> None:
    """Make glibc serve chunk-sized buffers with mmap, so that freeing one returns it at once.

    glibc raises its mmap threshold each time a large block is freed, after which 4 MiB chunk
    buffers come from the heap and fragment it: an object_store receiver grew to ~210 MiB of
    private memory over 1 GiB. A fixed 1 MiB threshold keeps it flat.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 1024 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def run_at_priority(nice: int = 0) -> None:
    """Run every thread of this process at niceness `nice`, where the process may.

    Ray starts worker processes at nice 15 so that its own services come first. A node actor
    is the data plane: at 15, next to anything at normal priority (a training job, a server,
    another test run) it gets a few percent of a core, casts slow to a crawl and caps are not
    reached, so a node actor runs at 0 by default. One on the control plane's own host runs
    a little nicer (the worker passes `CASTRAY_LOCAL_NODE_NICE`): bulk bytes then wait for
    the API and the feed, not the other way round.

    Linux keeps a niceness per thread, and a new thread takes its creator's: every thread
    there is now is set, so the ones started later (a receive, a send, a hasher) follow.
    Raising a priority needs CAP_SYS_NICE (root has it); without it an actor keeps Ray's
    niceness (start the raylet with RAY_worker_niceness=0 instead).
    """
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]  # no /proc: the calling thread
    for tid in threads:
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) != nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError:
            pass  # gone since, or not allowed
