"""Files through the worker (for nodes whose storage is on another host): list, fetch + download, delete.

Alice is an ordinary user (lists and fetches); root is staff (may delete).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from clusters.models import NodeFileRequest
from tests.helpers import write_file

pytestmark = [pytest.mark.ray, pytest.mark.django_db]


def done(request_id: int):  # type: ignore[no-untyped-def]
    def check() -> bool:
        return NodeFileRequest.objects.get(pk=request_id).status in NodeFileRequest.FINAL

    return check


def test_fetch_then_download_through_the_worker(worker, nodes, api: APIClient) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(20 * 1024 * 1024 + 123)  # several blocks, the last one short
    write_file(nodes["node_2"], "sub/data.bin", data)
    response = api.post("/api/cluster/file-requests", {"node": "node_2", "op": "fetch", "name": "sub/data.bin"})
    assert response.status_code == 202, response.json()
    request_id = response.json()["id"]
    # Not there yet: the download says so.
    assert api.get(f"/api/cluster/file-requests/{request_id}/download").status_code == 409
    assert worker.run_until(done(request_id), timeout=60)
    body = api.get(f"/api/cluster/file-requests/{request_id}").json()
    assert body["status"] == "done", body
    assert body["result"]["size"] == len(data) and body["result"]["sha256"] == hashlib.sha256(data).hexdigest()
    download = api.get(body["download_url"])
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == data
    assert download["X-Content-SHA256"] == hashlib.sha256(data).hexdigest()
    assert 'filename="data.bin"' in download["Content-Disposition"]


def test_list_and_delete(worker, nodes, api: APIClient, staff_api: APIClient) -> None:  # type: ignore[no-untyped-def]
    path = write_file(nodes["node_1"], "gone.txt", b"bye")
    request_id = api.post("/api/cluster/file-requests", {"node": "node_1", "op": "list"}).json()["id"]
    assert worker.run_until(done(request_id), timeout=60)
    listed = NodeFileRequest.objects.get(pk=request_id).result
    assert [f["name"] for f in listed["files"]] == ["gone.txt"] and listed["count"] == 1

    response = api.post("/api/cluster/file-requests", {"node": "node_1", "op": "delete", "name": "gone.txt"})
    assert response.status_code == 403  # ordinary users do not delete
    request_id = staff_api.post(
        "/api/cluster/file-requests", {"node": "node_1", "op": "delete", "name": "gone.txt"}
    ).json()["id"]
    assert worker.run_until(done(request_id), timeout=60)
    assert NodeFileRequest.objects.get(pk=request_id).status == "done"
    assert not path.exists()
    # Root's request is not Alice's to read.
    assert api.get(f"/api/cluster/file-requests/{request_id}").status_code == 404


def test_what_cannot_work_is_refused_or_fails_with_the_reason(worker, nodes, api: APIClient) -> None:  # type: ignore[no-untyped-def]
    response = api.post("/api/cluster/file-requests", {"node": "node_1", "op": "fetch", "name": "../etc/passwd"})
    assert response.status_code == 400 and response.json()["message"].startswith("name:")
    response = api.post("/api/cluster/file-requests", {"node": "nobody", "op": "list"})
    assert response.status_code == 400 and response.json()["message"].startswith("node:")
    response = api.post("/api/cluster/file-requests", {"node": "node_1", "op": "copy", "name": "x"})
    assert response.status_code == 400 and response.json()["message"].startswith("op:")
    request_id = api.post("/api/cluster/file-requests", {"node": "node_1", "op": "fetch", "name": "absent.bin"}).json()[
        "id"
    ]
    assert worker.run_until(done(request_id), timeout=60)
    record = NodeFileRequest.objects.get(pk=request_id)
    assert record.status == "failed" and "absent.bin is not a file" in record.error
    assert not list(Path(record.spool_path or "/nonexistent").parent.glob("*absent*"))
