from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand

from bridge.worker import Worker


class Command(BaseCommand):
    help = "Run the CastRay bridge worker: connects to Ray, runs node actors and casts."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--ray-address", default=None, help="Override RAY_ADDRESS for this worker.")
        parser.add_argument("--worker-id", default="", help="A stable id for logs and leases.")

    def handle(self, *args: Any, **options: Any) -> None:
        worker = Worker(worker_id=options["worker_id"], ray_address=options["ray_address"])

        def stop(signum: int, frame: Any) -> None:
            worker.stop_event.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"castray worker {worker.worker_id} running; Ctrl-C to stop")
        worker.run()
