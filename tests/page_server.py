"""CastRay's web server for browser tests, with the test playing the worker.

    python -m tests.page_server <data dir>

Sets up a fresh database in <data dir> with the user `admin` (password `admin-password`),
three online nodes and a cast of live.bin queued from node_1 to node_2 and node_3, then serves
CastRay on a free port (daphne, the in-memory channel layer, no worker, no Ray) and prints
`page-server: {"url": …, "transfer": …}` once it listens.

The worker's writes must happen in this process for their events to reach the pages it
serves, so the test sends them here: one step a line on stdin, carried out through the same
services the worker calls, each answered with `page-server: ok <step>` once committed.

    claim                       transfer_claim
    start {kwargs}              transfer_start(size=, sha256=, tree=, chunk_size=)
    parents {target: parent}    targets_set_parents, by node name
    progress {target: row}      target_progress, by node name (a ProgressRow as a dict)
    finish {target: result}     transfer_finish, by node name
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

PREFIX = "page-server: "
PASSWORD = "admin-password"


def say(text: str) -> None:
    sys.stdout.write(PREFIX + text + "\n")
    sys.stdout.flush()


def prepare() -> int:
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from nodes.models import Node
    from nodes.services import node_create
    from transfers import services

    call_command("migrate", interactive=False, verbosity=0)
    User.objects.create_user("admin", password=PASSWORD)
    made = [node_create(name=f"node_{i}") for i in (1, 2, 3)]
    Node.objects.update(status=Node.Status.ONLINE)
    return services.transfer_create(source=made[0], file_name="live.bin", targets=made[1:]).pk


def by_node(transfer: Any, named: dict[str, Any]) -> dict[int, Any]:
    """{node name: x} -> {target id: x}."""
    ids = dict(transfer.targets.values_list("node__name", "pk"))
    return {ids[name]: value for name, value in named.items()}


def step(transfer_id: int, line: str) -> None:
    from nodes.models import Node
    from transfers import services
    from transfers.models import Transfer

    name, _, arg = line.partition(" ")
    body = json.loads(arg) if arg else {}
    transfer = Transfer.objects.get(pk=transfer_id)
    if name == "claim":
        services.transfer_claim(worker_id="page-test", lease_seconds=300, limit=1)
    elif name == "start":
        services.transfer_start(transfer=transfer, **body)
    elif name == "parents":
        nodes = dict(Node.objects.values_list("name", "pk"))
        services.targets_set_parents(
            transfer=transfer, parents={k: nodes[v] for k, v in by_node(transfer, body).items()}
        )
    elif name == "progress":
        services.target_progress(transfer=transfer, rows=by_node(transfer, body))
    elif name == "finish":
        services.transfer_finish(transfer=transfer, results=by_node(transfer, body))
    else:
        raise ValueError(f"unknown step {name!r}")
    say(f"ok {name}")


def main() -> None:
    data_dir = Path(sys.argv[1])
    os.environ.update(
        CASTRAY_DATA_DIR=str(data_dir), CASTRAY_WORKER_IN_PROCESS="0", DJANGO_SETTINGS_MODULE="tests.settings"
    )
    import django

    django.setup()
    from daphne.endpoints import build_endpoint_description_strings
    from daphne.server import Server

    from castray_site.asgi import application
    from tests.servers import free_port

    transfer_id = prepare()
    port = free_port()

    def steps() -> None:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                step(transfer_id, line.strip())
            except Exception as exc:  # noqa: BLE001 - the test reads the reason instead of waiting
                say(f"error {line.split()[0]}: {exc!r}")

    def listening() -> None:
        say(json.dumps({"url": f"http://127.0.0.1:{port}", "transfer": transfer_id}))
        threading.Thread(target=steps, name="page-server-steps", daemon=True).start()

    Server(
        application=application,
        endpoints=build_endpoint_description_strings(host="127.0.0.1", port=port),
        ready_callable=listening,
    ).run()


if __name__ == "__main__":
    main()
