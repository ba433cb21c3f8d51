from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for the whole test session (it takes seconds to start)."""
    import ray

    ray.init(
        address="local",
        namespace="castray",
        include_dashboard=False,
        num_cpus=2,
        object_store_memory=256 * 1024 * 1024,
        log_to_driver=False,
    )
    yield
    ray.shutdown()


@pytest.fixture
def storage(tmp_path: Path, settings) -> Path:  # type: ignore[no-untyped-def]
    root = tmp_path / "storage"
    root.mkdir()
    settings.CASTRAY_STORAGE_DIR = root
    return root


@pytest.fixture
def worker(ray_session, storage, db):  # type: ignore[no-untyped-def]
    from bridge.worker import Worker

    w = Worker(worker_id="test-worker")
    yield w
    for node_id in list(w.actors):
        w.stop_actor(node_id)


@pytest.fixture
def nodes(worker, db):  # type: ignore[no-untyped-def]
    """node_1..node_3 with live actors."""
    from nodes.models import Node
    from nodes.services import node_create

    made = [node_create(name=f"node_{i}") for i in (1, 2, 3)]
    assert worker.run_until(lambda: Node.objects.online().count() == 3, timeout=60), list(
        Node.objects.values_list("name", "status", "status_detail")
    )
    return {n.name: Node.objects.get(pk=n.pk) for n in made}


@pytest.fixture
def alice(db) -> User:  # type: ignore[no-untyped-def]
    # Alice is an ordinary user: she may cast and read, not manage nodes.
    return User.objects.create_user("alice", password="alice-password")


@pytest.fixture
def root_user(db) -> User:  # type: ignore[no-untyped-def]
    # Root is staff: may manage nodes.
    return User.objects.create_user("root", password="root-password", is_staff=True)


@pytest.fixture
def browser(alice: User) -> Client:
    """Alice logged in to the web pages."""
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def api(alice: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(alice)
    return client


@pytest.fixture
def staff_api(root_user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(root_user)
    return client


@pytest.fixture
def make_nodes(worker, db):  # type: ignore[no-untyped-def]
    """Create `n` nodes (`c0`..) with live actors; returns them in order."""
    from nodes.models import Node
    from nodes.services import node_create

    def make(n: int, **fields):  # type: ignore[no-untyped-def]
        made = [node_create(name=f"c{i}") for i in range(n)]
        if fields:
            Node.objects.filter(pk__in=[m.pk for m in made]).update(**fields)
        assert worker.run_until(lambda: Node.objects.online().count() >= n, timeout=90), list(
            Node.objects.values_list("name", "status", "status_detail")
        )
        return [Node.objects.get(pk=m.pk) for m in made]

    return make
