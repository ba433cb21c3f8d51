"""Casts whose source is a URL: the API records it without credentials, and real actors fetch
it from a server on loopback (resuming a dropped connection, answering unchanged URLs from
their cache) before casting it, or end the cast with the reason."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodes.models import Node
from tests.helpers import finished, sha256_of
from tests.origin_servers import OriginState, http_origin, moto_s3
from transfers.models import Transfer
from transfers.services import CastError, transfer_create


@pytest.fixture
def origin() -> Iterator[tuple[str, OriginState]]:
    with http_origin() as server:
        yield server


@pytest.fixture
def two_nodes(db) -> list[Node]:  # type: ignore[no-untyped-def]
    from nodes.services import node_create

    return [node_create(name=name) for name in ("src", "dst")]


@pytest.mark.django_db
def test_the_api_records_an_origin_without_credentials_and_names_the_file_after_it(api, two_nodes) -> None:
    url = "https://user:secret@files.example.com/models/weights.bin?X-Amz-Signature=abc&X-Amz-Credential=k&v=3"
    response = api.post("/api/v1/transfers/", {"source": "src", "origin": url, "targets": ["dst"]}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["origin"] == "https://files.example.com/models/weights.bin?v=3"
    assert body["file_name"] == "weights.bin"
    transfer = Transfer.objects.get(pk=body["id"])
    assert "secret" not in transfer.origin and "abc" not in transfer.origin
    assert "secret" not in api.get(f"/api/v1/transfers/{transfer.pk}/").content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/iam/", "cloud metadata"),
        ("http://[fd00:ec2::254]/", "cloud metadata"),
        ("http://127.0.0.1/x", "loopback or private"),
        ("file:///etc/passwd", "origin URLs must be"),
    ],
)
def test_the_api_refuses_origins_it_can_tell_are_unsafe(api, two_nodes, url, reason) -> None:
    response = api.post("/api/v1/transfers/", {"source": "src", "origin": url, "targets": ["dst"]}, format="json")
    assert response.status_code == 400
    assert reason in str(response.json())
    with pytest.raises(CastError, match=reason):
        transfer_create(source=two_nodes[0], file_name="", origin=url, targets=[two_nodes[1]])


@pytest.mark.django_db
def test_a_cast_needs_a_file_name_or_an_origin(api, two_nodes) -> None:
    response = api.post("/api/v1/transfers/", {"source": "src", "targets": ["dst"]}, format="json")
    assert response.status_code == 400 and "file_name" in response.json()["errors"]


@pytest.fixture
def local_origins(settings):  # type: ignore[no-untyped-def]
    # The test server is on loopback, which production refuses unless an operator allows it.
    settings.CASTRAY_ORIGIN_ALLOW_PRIVATE = True
    settings.CASTRAY_ORIGIN_TIMEOUT = 2.0


@pytest.mark.ray
@pytest.mark.django_db
def test_a_url_is_fetched_once_resumed_after_a_drop_and_cast_to_every_target(
    worker, make_nodes, origin, local_origins
) -> None:
    base, state = origin
    data = os.urandom(3 * 1024 * 1024 + 333)
    state.put("/ckpt/model.bin", data)
    state.drop_first_get = True
    nodes = make_nodes(3)
    transfer = transfer_create(source=nodes[0], file_name="", origin=f"{base}/ckpt/model.bin", targets=nodes[1:])
    assert worker.run_until(finished(transfer), timeout=120)
    assert transfer.status == Transfer.Status.COMPLETED, transfer.error
    digest = hashlib.sha256(data).hexdigest()
    assert transfer.sha256 == digest and transfer.size == len(data)
    for node in nodes:
        assert sha256_of(Path(node.storage_root) / "model.bin") == digest, node.name
    assert [r.range for r in state.gets("/ckpt/model.bin")] == ["", f"bytes={len(data) // 2}-"]

    again = transfer_create(source=nodes[0], file_name="again.bin", origin=f"{base}/ckpt/model.bin", targets=nodes[1:])
    assert worker.run_until(finished(again), timeout=120)
    assert again.status == Transfer.Status.COMPLETED, again.error
    assert len(state.gets("/ckpt/model.bin")) == 2  # unchanged ETag: no new GET, only a HEAD
    assert sha256_of(Path(nodes[2].storage_root) / "again.bin") == digest


@pytest.mark.ray
@pytest.mark.django_db
def test_a_missing_or_silent_origin_fails_the_cast_with_the_reason(worker, make_nodes, origin, local_origins) -> None:
    base, _state = origin
    nodes = make_nodes(2)
    missing = transfer_create(source=nodes[0], file_name="", origin=f"{base}/nope.bin", targets=[nodes[1]])
    silent = transfer_create(source=nodes[0], file_name="", origin=f"{base}/slow/x.bin", targets=[nodes[1]])
    assert worker.run_until(lambda: finished(missing)() and finished(silent)(), timeout=120)
    assert missing.status == Transfer.Status.FAILED
    assert "answered 404 Not Found" in missing.error and "nope.bin" in missing.error
    assert silent.status == Transfer.Status.FAILED
    assert "did not answer within 2 s" in silent.error


@pytest.mark.ray
@pytest.mark.django_db
def test_an_s3_prefix_is_cast_as_a_directory_from_motos_server(worker, make_nodes, settings) -> None:
    import boto3

    with moto_s3() as endpoint:
        # The test writes with made-up keys (moto takes any); the actors have none in their
        # environment, so they read anonymously: the objects are public.
        client = boto3.client(
            "s3", endpoint_url=endpoint, aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1"
        )
        client.create_bucket(Bucket="models")
        objects = {"ckpt/config.json": b'{"layers": 2}', "ckpt/w/0.bin": os.urandom(300_000), "ckpt/w/1.bin": b"1"}
        for key, body in objects.items():
            client.put_object(Bucket="models", Key=key, Body=body, ACL="public-read")
        settings.CASTRAY_S3_ENDPOINT_URL = endpoint
        nodes = make_nodes(3)
        transfer = transfer_create(source=nodes[0], file_name="", origin="s3://models/ckpt/", targets=nodes[1:])
        assert worker.run_until(finished(transfer), timeout=120)
    assert transfer.status == Transfer.Status.COMPLETED, transfer.error
    assert transfer.file_name == "ckpt" and transfer.is_directory and transfer.files == 3
    for node in nodes:
        top = (Path(node.storage_root) / "ckpt").resolve()
        held = {p.relative_to(top).as_posix(): p.read_bytes() for p in top.rglob("*") if p.is_file()}
        assert held == {k.removeprefix("ckpt/"): v for k, v in objects.items()}, node.name


def _grow(new_etag: bool):  # type: ignore[no-untyped-def]
    """What the origin does once the first GET dropped: the object grows, with or without a new ETag."""

    def change(state: OriginState, path: str) -> None:
        state.files[path] += b"appended after the fetch began"
        if new_etag:
            state.etags[path] = '"rewritten"'

    return change


@pytest.mark.ray
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("new_etag", "reason"),
    [
        (True, 'changed during the fetch (ETag "'),  # If-Range fails: the whole new object comes back
        (False, "size of http://127.0.0.1:"),  # same ETag, but the Content-Range states another total
    ],
)
def test_an_object_that_changes_during_the_fetch_fails_the_cast_saying_so_and_leaves_no_file(
    worker, make_nodes, origin, local_origins, new_etag, reason
) -> None:
    base, state = origin
    state.put("/ckpt/moving.bin", os.urandom(2 * 1024 * 1024))
    state.drop_first_get = True
    state.after_drop = _grow(new_etag)
    nodes = make_nodes(2)
    transfer = transfer_create(source=nodes[0], file_name="", origin=f"{base}/ckpt/moving.bin", targets=[nodes[1]])
    assert worker.run_until(finished(transfer), timeout=120)
    assert transfer.status == Transfer.Status.FAILED, transfer.error
    assert reason in transfer.error and "changed during the fetch" in transfer.error, transfer.error
    assert [r.range for r in state.gets("/ckpt/moving.bin")][1].startswith("bytes="), "it never tried to resume"
    for node in nodes:
        root = Path(node.storage_root)
        assert not (root / "moving.bin").exists(), node.name
        assert not [p for p in root.rglob("*") if p.name.endswith(".part") or p.name.endswith(".data")], node.name
