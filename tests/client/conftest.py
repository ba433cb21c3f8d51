"""One real CastRay for all the client's tests: a two-raylet Ray cluster (`ray start`), and
`manage.py castray_up` attached to it (server, worker, actors and files), with the demo nodes
node_1..node_3 and one adopted node pinned to each Ray node (edge-0 on the head, edge-1 on
the worker). The client tests talk to it only as users do: the `castray` command over HTTP
and WebSockets, or `castray_client` in a Ray driver process.

Package-scoped: started once for tests/client and stopped when they are done, so the rest of
the suite does not share the machine's two cores with it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster_fixtures import CastRayServer, RayCluster
from tests.servers import api_call

LABEL = "castray.io/node"
NODES = ("edge-0", "edge-1", "node_1", "node_2", "node_3")


class ClientServer(CastRayServer):
    """The running server, with what the tests need to look at from its side."""

    request_log: Path
    admin_password: str

    def storage(self, node: str) -> Path:
        return self.data_dir / "storage" / node

    def as_admin(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        return api_call(self.url, method, path, body, token=self.token, timeout=15)

    def range_requests(self) -> list[dict]:
        import json

        if not self.request_log.exists():
            return []
        return [json.loads(line) for line in self.request_log.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="package")
def ray_cluster() -> Iterator[RayCluster]:
    cluster = RayCluster("cl")
    try:
        cluster.start_head(labels={LABEL: "edge-0"})
        cluster.add_worker("w1", labels={LABEL: "edge-1"})
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)  # its logs and session files


@pytest.fixture(scope="package")
def server(ray_cluster: RayCluster) -> Iterator[ClientServer]:
    root = Path(tempfile.mkdtemp(prefix="castray-client-"))
    request_log = root / "requests.jsonl"
    castray = ClientServer(
        root / "data",
        ray_cluster.address,
        {
            # The real settings plus a recorder of Range requests (tests/client/server_settings.py).
            "DJANGO_SETTINGS_MODULE": "tests.client.server_settings",
            "CASTRAY_TEST_REQUEST_LOG": str(request_log),
            # One CastRay node per Ray node, named after its label: what `ensure` maps onto.
            "CASTRAY_ADOPT_RAY_NODES": "1",
        },
    )
    castray.request_log = request_log
    try:
        castray.start()
        castray.admin_password = (castray.data_dir / "admin_password").read_text().strip()
        try:
            castray.wait(
                "every node online",
                lambda: all(castray.nodes().get(n, {}).get("status") == "online" for n in NODES),
                timeout=180,
                interval=0.5,
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{ray_cluster.logs()}") from None
        yield castray
    finally:
        castray.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def env(server: ClientServer, tmp_path: Path) -> dict[str, str]:
    """`castray`'s environment: the server and the admin's token, a config dir of its own."""
    from tests.client.helpers import cli_env

    return cli_env(tmp_path, CASTRAY_URL=server.url, CASTRAY_TOKEN=server.token)
