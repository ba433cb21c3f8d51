"""Two `castray_worker` processes against one PostgreSQL database: every cast is claimed exactly once.

A trigger on the transfers table logs each queued -> running change with the worker that made
it, so the test sees every claim, not just the final state. The workers share the session's Ray
and the node actors (named, so both find the same ones).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from nodes.models import Node
from nodes.services import node_create
from tests.cluster_fixtures import BASE_DIR
from transfers.models import Target, Transfer
from transfers.services import transfer_create

pytestmark = [pytest.mark.ray, pytest.mark.django_db(transaction=True)]
CASTS = 50

TRIGGER = """
CREATE TABLE castray_test_claims (
    transfer_id bigint NOT NULL, owner text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION castray_test_log_claim() RETURNS trigger AS $$
BEGIN
    IF OLD.status = 'queued' AND NEW.status = 'running' THEN
        INSERT INTO castray_test_claims (transfer_id, owner) VALUES (NEW.id, NEW.lease_owner);
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER castray_test_claims AFTER UPDATE ON transfers_transfer
    FOR EACH ROW EXECUTE FUNCTION castray_test_log_claim();
"""
DROP = """
DROP TRIGGER IF EXISTS castray_test_claims ON transfers_transfer;
DROP FUNCTION IF EXISTS castray_test_log_claim();
DROP TABLE IF EXISTS castray_test_claims;
"""


@pytest.fixture
def claim_log() -> Iterator[None]:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL=postgres://...): SQLite has one writer and no SKIP LOCKED")
    with connection.cursor() as cursor:
        cursor.execute(DROP)
        cursor.execute(TRIGGER)
    yield
    with connection.cursor() as cursor:
        cursor.execute(DROP)


def database_url() -> str:
    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


@pytest.fixture
def workers(ray_session, claim_log, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    import ray

    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "RAY_ADDRESS")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "castray_site.settings",
            "DATABASE_URL": database_url(),
            "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
            "CASTRAY_RAY_SHIP_CODE": "0",
            # Both workers talk to the same actors: they must sign offers with the same key.
            "CASTRAY_CLUSTER_SECRET": secrets.token_hex(32),
            "CASTRAY_HEARTBEAT_SECONDS": "0.5",
            "CASTRAY_MAX_ACTIVE_TRANSFERS": "4",
            "CASTRAY_CHUNK_SIZE": "64KiB",
        }
    )
    procs = []
    for name in ("A", "B"):
        log = open(tmp_path / f"worker-{name}.log", "wb")  # noqa: SIM115 - handed to the child
        procs.append(
            subprocess.Popen(
                [sys.executable, "manage.py", "castray_worker", "--worker-id", f"worker-{name}"],
                cwd=BASE_DIR,
                env={**env, "CASTRAY_DATA_DIR": str(tmp_path / f"data-{name}")},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        log.close()
    try:
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for actor in ray.util.list_named_actors(all_namespaces=True):
            if actor["name"].startswith("castnode:tw_"):
                try:
                    ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]))
                except ValueError:
                    pass


def test_two_workers_claim_each_of_fifty_casts_exactly_once(workers, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    nodes = [node_create(name=f"tw_{i}", storage_dir=str(tmp_path / "storage" / f"tw_{i}")) for i in range(4)]
    for i in range(CASTS):
        source = nodes[i % 4]
        path = Path(source.storage_dir) / f"c{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(96 * 1024))
        others = [n for n in nodes if n.pk != source.pk]
        transfer_create(source=source, file_name=path.name, targets=[others[i % 3], others[(i + 1) % 3]])

    deadline = time.monotonic() + 240
    while Transfer.objects.exclude(status__in=Transfer.FINAL).exists():
        for proc, name in zip(workers, "AB", strict=True):
            log = (tmp_path / f"worker-{name}.log").read_text(errors="replace")
            assert proc.poll() is None, f"worker {name} exited:\n{log[-4000:]}"
        assert time.monotonic() < deadline, list(Transfer.objects.values_list("id", "status"))
        time.sleep(0.5)

    with connection.cursor() as cursor:
        cursor.execute("SELECT transfer_id, owner FROM castray_test_claims ORDER BY at")
        claims = cursor.fetchall()
    per_cast = Counter(tid for tid, _ in claims)
    per_worker = Counter(owner for _, owner in claims)
    print(f"claims: {len(claims)} for {len(per_cast)} casts; by worker: {dict(per_worker)}")
    assert len(claims) == CASTS and set(per_cast.values()) == {1}, per_cast.most_common(3)
    assert set(per_worker) <= {"worker-A", "worker-B"}
    assert per_worker["worker-A"] > 0 and per_worker["worker-B"] > 0, per_worker
    statuses = Counter(Transfer.objects.values_list("status", flat=True))
    assert statuses == {"completed": CASTS}, [
        (t.pk, t.status, t.error) for t in Transfer.objects.exclude(status="completed")
    ]
    assert set(Transfer.objects.values_list("attempts", flat=True)) == {1}
    assert not Target.objects.exclude(status=Target.Status.COMPLETED).exists()
    for target in Target.objects.select_related("transfer", "node"):
        received = Path(target.node.storage_dir) / target.transfer.file_name
        sent = Path(target.transfer.source.storage_dir) / target.transfer.file_name
        assert received.read_bytes() == sent.read_bytes()
    assert Node.objects.filter(name__startswith="tw_").count() == 4
