"""Ray actors used only as benchmark references. No Django here: Ray workers import it."""

from __future__ import annotations

import os
import resource
import time


class RayGetWriter:
    """Gets a file's bytes from Ray's object store and writes them to disk (fsynced)."""

    def write(self, data: bytes, path: str) -> dict[str, float]:
        started = time.time()
        with open(path, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return {
            "seconds": time.time() - started,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
