from __future__ import annotations

import secrets
import threading
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from clusters.services import cluster_active
from nodes.models import Node
from nodes.services import node_create

DEMO_NODES = ["node_1", "node_2", "node_3"]
STOP_TIMEOUT = 8.0  # seconds the worker has to stop after Ctrl-C or SIGTERM


class Command(BaseCommand):
    help = (
        "Set up and start CastRay on this machine: migrate, create an admin account and demo nodes "
        "if there are none, then serve HTTP and WebSockets with the worker inside (unless "
        "CASTRAY_WORKER_IN_PROCESS=0)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--setup-only", action="store_true", help="Prepare the database and stop.")

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        url = f"http://{options['host']}:{options['port']}/"
        login = self.ensure_admin(url)
        self.ensure_demo_nodes()
        cluster_active()
        if options["setup_only"]:
            self.stdout.write(login)
            return
        self.serve(options["host"], options["port"], login)

    def ensure_admin(self, url: str) -> str:
        """Create the admin account on the first run; return the line that tells how to log in."""
        user_model = get_user_model()
        path = settings.DATA_DIR / "admin_password"
        if user_model.objects.filter(is_superuser=True).exists():
            hint = f"the admin password is in {path}" if path.exists() else "with your existing account"
            return f"Log in at {url} ({hint})."
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser("admin", "", password)
        path.touch(mode=0o600)
        path.write_text(password + "\n")
        return self.style.SUCCESS(
            f"Created admin account: log in at {url} as 'admin' with password {password} (kept in {path})."
        )

    def ensure_demo_nodes(self) -> None:
        if Node.objects.exists():
            return
        for name in DEMO_NODES:
            node_create(name=name)
        self.stdout.write(f"Created demo nodes {', '.join(DEMO_NODES)}.")

    def serve(self, host: str, port: int, login: str) -> None:
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server

        from castray_site.asgi import application

        worker = None
        thread = None
        if settings.CASTRAY_WORKER_IN_PROCESS:
            from bridge.worker import Worker

            worker = Worker()
            thread = threading.Thread(target=worker.run, name="castray-worker", daemon=True)
            thread.start()
            self.stdout.write(
                f"Worker {worker.worker_id} runs inside the server (Ray: {settings.RAY_ADDRESS or 'local'})."
            )

        def listening() -> None:
            # Last, once the port is open, so the login line is not lost above other output.
            self.stdout.write(self.style.SUCCESS(f"CastRay serving on http://{host}:{port}/ (Ctrl-C to stop)"))
            self.stdout.write(login)
            self.stdout.flush()

        try:
            Server(
                application=application,
                endpoints=build_endpoint_description_strings(host=host, port=port),
                verbosity=1,
                ready_callable=listening,
            ).run()
        finally:
            if worker is not None and thread is not None:
                # The worker ends its actors and the local Ray it started: a daemon thread
                # killed with the process would leave Ray's agents running, orphaned.
                worker.stop_event.set()
                thread.join(STOP_TIMEOUT)
