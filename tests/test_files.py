"""Files in a node's storage through the API: upload, list, download with Range, delete, generate.

Alice is an ordinary user: she may upload, generate, list and download. Root is staff: only
staff delete files.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from pathlib import Path

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from clusters.models import Cluster
from clusters.services import cluster_active, cluster_record
from dataplane.partfile import PartRecord
from dataplane.storage import META_DIR, ManifestCache, compute_manifest
from nodes.models import Node
from nodes.services import node_create
from tests.helpers import sha256_of
from tests.tmpfs import small_tmpfs
from transfers.models import Transfer
from transfers.services import transfer_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttles() -> None:
    cache.clear()  # local memory: this process's throttle counters only


@pytest.fixture
def node(storage: Path) -> Node:
    made = node_create(name="node_1")
    Path(made.storage_root).mkdir(parents=True)
    return made


@pytest.fixture
def peer(storage: Path) -> Node:
    made = node_create(name="node_2")
    Path(made.storage_root).mkdir(parents=True)
    return made


def upload(client: APIClient, node: str, data: bytes, **fields: object):  # type: ignore[no-untyped-def]
    handle = io.BytesIO(data)
    handle.name = str(fields.pop("filename", "upload.bin"))
    return client.post(f"/api/v1/nodes/{node}/files/", {"file": handle, **fields}, format="multipart")


# --- upload ------------------------------------------------------------------------------
def test_it_uploads_a_file_and_records_its_manifest(api, node, settings) -> None:
    data = os.urandom(300_000)
    response = upload(api, "node_1", data, name="in/data.bin")
    assert response.status_code == 201, response.json()
    body = response.json()
    path = Path(node.storage_root) / "in" / "data.bin"
    assert path.read_bytes() == data
    assert body["name"] == "in/data.bin"
    assert body["size"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["download_url"].endswith("/api/v1/nodes/node_1/files/in/data.bin")
    # The manifest was computed while streaming: a later cast finds it without hashing.
    cached = ManifestCache(Path(node.storage_root)).get("in/data.bin", path, settings.CASTRAY_CHUNK_SIZE)
    assert cached == compute_manifest(path, settings.CASTRAY_CHUNK_SIZE)
    # Nothing is left in the staging area.
    assert not list((Path(node.storage_root) / META_DIR / "staging").iterdir())


def test_it_uses_the_uploaded_file_name_by_default_and_accepts_empty_files(api, node) -> None:
    response = upload(api, "node_1", b"", filename="empty.txt")
    assert response.status_code == 201, response.json()
    assert response.json()["name"] == "empty.txt"
    assert (Path(node.storage_root) / "empty.txt").read_bytes() == b""


def test_uploads_are_streamed_to_the_node_storage_not_kept_in_memory(api, node, settings) -> None:
    # Bigger than Django's in-memory threshold: Django would spool it to /tmp; ours goes straight
    # into the node's staging area, so no temporary upload file is created anywhere else.
    settings.FILE_UPLOAD_TEMP_DIR = str(Path(node.storage_root).parent / "must-stay-empty")
    Path(settings.FILE_UPLOAD_TEMP_DIR).mkdir()
    data = os.urandom(settings.FILE_UPLOAD_MAX_MEMORY_SIZE + 1_000_000)
    response = upload(api, "node_1", data, name="big.bin")
    assert response.status_code == 201, response.json()
    assert sha256_of(Path(node.storage_root) / "big.bin") == hashlib.sha256(data).hexdigest()
    assert not list(Path(settings.FILE_UPLOAD_TEMP_DIR).iterdir())


def test_an_oversize_upload_gets_413_and_leaves_nothing(api, node, settings) -> None:
    settings.CASTRAY_MAX_UPLOAD_SIZE = 100_000
    response = upload(api, "node_1", os.urandom(200_000), name="big.bin")
    assert response.status_code == 413
    body = response.json()
    assert body["success"] is False
    assert "limit of 97.7 KiB" in body["message"]
    assert not (Path(node.storage_root) / "big.bin").exists()
    staging = Path(node.storage_root) / META_DIR / "staging"
    assert not staging.exists() or not list(staging.iterdir())


def test_an_upload_over_the_limit_without_a_telling_content_length_is_cut_off(api, node, settings) -> None:
    # Just under limit + form overhead by Content-Length, but the file itself is over the limit.
    settings.CASTRAY_MAX_UPLOAD_SIZE = 100_000
    response = upload(api, "node_1", os.urandom(100_001), name="edge.bin")
    assert response.status_code == 413
    assert not (Path(node.storage_root) / "edge.bin").exists()
    assert not list((Path(node.storage_root) / META_DIR / "staging").iterdir())


def test_an_upload_larger_than_the_free_space_is_507_and_leaves_nothing(api, node) -> None:
    with small_tmpfs(Path(node.storage_root), "4m") as root:
        response = upload(api, "node_1", os.urandom(6 * 1024 * 1024), name="big.bin")
        assert response.status_code == 507, response.json()
        assert "no space left on device" in response.json()["message"]
        assert not (root / "big.bin").exists()
        staging = root / META_DIR / "staging"
        assert not staging.exists() or not list(staging.iterdir())


def test_a_disk_that_fills_during_an_upload_is_507_and_the_staged_file_goes(api, node, monkeypatch) -> None:
    # Another writer takes the space after the up-front check: the write itself runs out.
    from nodes import uploads

    monkeypatch.setattr(uploads, "free_space", lambda root: 1 << 40)
    with small_tmpfs(Path(node.storage_root), "4m") as root:
        response = upload(api, "node_1", os.urandom(6 * 1024 * 1024), name="big.bin")
        assert response.status_code == 507, response.json()
        assert "while writing the upload" in response.json()["message"]
        assert not (root / "big.bin").exists()
        assert not list((root / META_DIR / "staging").iterdir())
        assert shutil.disk_usage(root).used < 1024 * 1024  # the tmpfs is not left full
        # Space is back: a file that fits goes through.
        assert upload(api, "node_1", os.urandom(1024 * 1024), name="fits.bin").status_code == 201


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("../escape.bin", "contains '..'"),
        ("/etc/passwd", "is absolute"),
        (".castray/manifests/x", "reserved for CastRay"),
        ("x.part", "reserved for files being received"),
        ("link/x.bin", "symbolic link"),
    ],
)
def test_unsafe_upload_names_are_refused(api, node, name: str, says: str) -> None:
    outside = Path(node.storage_root).parent / "outside"
    outside.mkdir()
    (Path(node.storage_root) / "link").symlink_to(outside)
    response = upload(api, "node_1", b"data", name=name)
    assert response.status_code == 400, response.json()
    assert response.json()["message"].startswith("name:")
    assert says in response.json()["message"]
    assert not list(outside.iterdir())
    assert not list((Path(node.storage_root) / META_DIR / "staging").iterdir())


def test_an_existing_file_is_replaced_only_when_asked(api, node) -> None:
    assert upload(api, "node_1", b"one", name="a.txt").status_code == 201
    response = upload(api, "node_1", b"two", name="a.txt")
    assert response.status_code == 409
    assert "already exists" in response.json()["message"]
    assert (Path(node.storage_root) / "a.txt").read_bytes() == b"one"
    response = upload(api, "node_1", b"two", name="a.txt", overwrite="true")
    assert response.status_code == 201
    assert (Path(node.storage_root) / "a.txt").read_bytes() == b"two"
    assert response.json()["sha256"] == hashlib.sha256(b"two").hexdigest()


def test_upload_needs_a_file_in_multipart(api, node) -> None:
    response = api.post("/api/v1/nodes/node_1/files/", {"name": "x"}, format="multipart")
    assert response.status_code == 400
    assert response.json()["message"].startswith("file:")
    response = api.post("/api/v1/nodes/node_1/files/", {"file": "abc"}, format="json")
    assert response.status_code == 415
    assert response.json()["success"] is False


def test_upload_to_an_unknown_node_is_404_and_to_storage_elsewhere_is_409(api, storage) -> None:
    response = upload(api, "node_77", b"x")
    assert response.status_code == 404
    assert "no node named 'node_77'" in response.json()["message"]
    cluster_record(cluster=cluster_active(), status=Cluster.Status.CONNECTED)
    node_create(name="remote", storage_dir="/nonexistent/elsewhere")
    response = upload(api, "remote", b"x")
    assert response.status_code == 409
    assert "go through the worker" in response.json()["message"]


def test_anonymous_uploads_are_refused_before_anything_is_written(node) -> None:
    response = upload(APIClient(), "node_1", b"x", name="anon.txt")
    assert response.status_code == 401
    assert not (Path(node.storage_root) / "anon.txt").exists()


def test_a_session_login_upload_is_also_streamed_into_storage(alice, node, settings) -> None:
    # A session login makes DRF run the CSRF check, which reads the form before the view does:
    # the upload handler is in place by then.
    settings.FILE_UPLOAD_TEMP_DIR = str(Path(node.storage_root).parent / "must-stay-empty")
    Path(settings.FILE_UPLOAD_TEMP_DIR).mkdir()
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)
    response = upload(client, "node_1", b"hello", name="csrf.txt")
    assert response.status_code == 403
    assert "CSRF" in response.json()["message"]
    assert not (Path(node.storage_root) / "csrf.txt").exists()

    client.get("/api-auth/login/")  # sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    data = os.urandom(settings.FILE_UPLOAD_MAX_MEMORY_SIZE + 1000)
    handle = io.BytesIO(data)
    handle.name = "csrf.bin"
    response = client.post("/api/v1/nodes/node_1/files/", {"file": handle}, format="multipart", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201, response.json()
    assert (Path(node.storage_root) / "csrf.bin").read_bytes() == data
    assert not list(Path(settings.FILE_UPLOAD_TEMP_DIR).iterdir())


@pytest.mark.parametrize("login", ["token", "session"])
def test_too_many_files_in_one_upload_are_a_400_and_nothing_is_kept(alice, node, settings, login: str) -> None:
    # Django stops parsing at DATA_UPLOAD_MAX_NUMBER_FILES. With a session login the CSRF check
    # is what reads the form, before the view: what was staged by then goes as well.
    client = APIClient(enforce_csrf_checks=True)
    headers = {}
    if login == "token":
        client.force_authenticate(alice)
    else:
        client.force_login(alice)
        client.get("/api-auth/login/")  # sets the CSRF cookie
        headers["HTTP_X_CSRFTOKEN"] = client.cookies["csrftoken"].value
    files = {}
    for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FILES + 1):
        files[f"file{i}"] = io.BytesIO(b"x")
        files[f"file{i}"].name = f"f{i}.bin"
    response = client.post("/api/v1/nodes/node_1/files/", files, format="multipart", **headers)
    assert response.status_code == 400, response.content
    assert response.json()["message"] == "the request has more than 100 files; upload one file per request"
    assert [p.name for p in Path(node.storage_root).iterdir()] in ([], [META_DIR])
    assert not list(Path(node.storage_root).glob(f"{META_DIR}/staging/*"))


# --- list --------------------------------------------------------------------------------
def test_it_lists_files_with_size_and_sha256_hiding_bookkeeping(api, node) -> None:
    root = Path(node.storage_root)
    upload(api, "node_1", b"uploaded", name="b/up.txt")
    (root / "plain.txt").write_bytes(b"plain")
    (root / "coming.bin.part").write_bytes(b"half")
    outside = root.parent / "secret.txt"
    outside.write_text("no")
    (root / "evil").symlink_to(outside)
    response = api.get("/api/v1/nodes/node_1/files/")
    assert response.status_code == 200
    body = response.json()
    rows = {row["name"]: row for row in body["results"]}
    assert set(rows) == {"b/up.txt", "coming.bin.part", "plain.txt"}
    assert rows["b/up.txt"]["sha256"] == hashlib.sha256(b"uploaded").hexdigest()
    assert rows["b/up.txt"]["size"] == 8 and rows["b/up.txt"]["partial"] is False
    assert rows["plain.txt"]["sha256"] is None  # not hashed yet
    assert rows["coming.bin.part"]["partial"] is True
    # Asked to, it hashes what was not hashed yet.
    rows = {row["name"]: row for row in api.get("/api/v1/nodes/node_1/files/?hash=1").json()["results"]}
    assert rows["plain.txt"]["sha256"] == hashlib.sha256(b"plain").hexdigest()


def test_the_file_list_is_paginated(api, node) -> None:
    for i in range(5):
        (Path(node.storage_root) / f"f{i}.txt").write_text(str(i))
    body = api.get("/api/v1/nodes/node_1/files/?limit=2&offset=2").json()
    assert body["count"] == 5
    assert [row["name"] for row in body["results"]] == ["f2.txt", "f3.txt"]


def test_listing_needs_a_known_local_node(api, storage) -> None:
    assert api.get("/api/v1/nodes/nope/files/").status_code == 404
    cluster_record(cluster=cluster_active(), status=Cluster.Status.CONNECTED)
    node_create(name="remote", storage_dir="/nonexistent/elsewhere")
    response = api.get("/api/v1/nodes/remote/files/")
    assert response.status_code == 409
    assert "not on this host" in response.json()["message"]


def test_while_ray_is_down_a_storage_not_created_yet_is_not_called_remote(api, storage) -> None:
    cluster_record(cluster=cluster_active(), status=Cluster.Status.DEGRADED, error="Ray did not start at local")
    node_create(name="fresh")  # its actor, which creates the directory, never started
    response = api.post("/api/v1/nodes/fresh/generate/", {"name": "g.bin", "size": 10}, format="json")
    assert response.status_code == 409
    message = response.json()["message"]
    assert "not on this host" not in message
    assert "not connected to Ray" in message and "degraded: Ray did not start at local" in message


# --- download ----------------------------------------------------------------------------
@pytest.fixture
def blob(node: Node) -> bytes:
    data = os.urandom(10_000)
    (Path(node.storage_root) / "d").mkdir()
    (Path(node.storage_root) / "d" / "blob.bin").write_bytes(data)
    return data


def body_of(response) -> bytes:  # type: ignore[no-untyped-def]
    return b"".join(response.streaming_content)


def test_it_downloads_a_whole_file(api, blob) -> None:
    response = api.get("/api/v1/nodes/node_1/files/d/blob.bin", HTTP_ACCEPT="application/octet-stream")
    assert response.status_code == 200
    assert body_of(response) == blob
    assert response["Content-Length"] == str(len(blob))
    assert response["Accept-Ranges"] == "bytes"
    assert 'filename="blob.bin"' in response["Content-Disposition"]


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-99", 0, 99), ("bytes=9990-", 9990, 9999), ("bytes=-10", 9990, 9999), ("bytes=9000-20000", 9000, 9999)],
)
def test_it_serves_a_byte_range(api, blob, header: str, start: int, end: int) -> None:
    response = api.get("/api/v1/nodes/node_1/files/d/blob.bin", HTTP_RANGE=header)
    assert response.status_code == 206
    assert body_of(response) == blob[start : end + 1]
    assert response["Content-Range"] == f"bytes {start}-{end}/10000"
    assert response["Content-Length"] == str(end - start + 1)


@pytest.mark.parametrize("header", ["bytes=10000-", "bytes=50-10", "bytes=abc", "bytes=-0", "bytes=-"])
def test_an_unsatisfiable_range_gets_416(api, blob, header: str) -> None:
    response = api.get("/api/v1/nodes/node_1/files/d/blob.bin", HTTP_RANGE=header)
    assert response.status_code == 416
    assert response["Content-Range"] == "bytes */10000"
    assert response.json()["message"].startswith("Range:")


def test_several_ranges_or_other_units_get_the_whole_file(api, blob) -> None:
    for header in ["bytes=0-1,5-6", "items=0-1"]:
        response = api.get("/api/v1/nodes/node_1/files/d/blob.bin", HTTP_RANGE=header)
        assert response.status_code == 200
        assert body_of(response) == blob


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("missing.bin", 404, "does not exist"),
        ("d", 404, "does not exist"),
        ("../../outside.txt", 400, "contains '..'"),
        ("%2Fetc%2Fpasswd", 400, "is absolute"),
        (".castray/manifests/x.json", 400, "reserved"),
        ("escape", 400, "symbolic link"),
    ],
)
def test_downloads_stay_inside_the_storage(api, blob, node, path: str, status: int, says: str) -> None:
    outside = Path(node.storage_root).parent / "outside.txt"
    outside.write_text("not yours")
    (Path(node.storage_root) / "escape").symlink_to(outside)
    response = api.get(f"/api/v1/nodes/node_1/files/{path}")
    assert response.status_code == status, path
    assert says in response.json()["message"]


# --- delete ------------------------------------------------------------------------------
def test_only_staff_delete_files(api, staff_api, blob, node) -> None:
    path = Path(node.storage_root) / "d" / "blob.bin"
    assert api.delete("/api/v1/nodes/node_1/files/d/blob.bin").status_code == 403
    assert path.exists()
    assert staff_api.delete("/api/v1/nodes/node_1/files/d/blob.bin").status_code == 204
    assert not path.exists()
    response = staff_api.delete("/api/v1/nodes/node_1/files/d/blob.bin")
    assert response.status_code == 404
    assert staff_api.delete("/api/v1/nodes/node_1/files/../x").status_code == 400
    assert staff_api.delete("/api/v1/nodes/node_1/files/d").status_code == 400


def test_staff_delete_the_part_of_a_failed_receive_unless_a_cast_will_resume_it(api, staff_api, node, peer) -> None:
    part = Path(peer.storage_root) / "d" / "big.bin.part"
    part.parent.mkdir()
    part.write_bytes(b"half")
    record = PartRecord.of(Path(peer.storage_root).resolve(), "d/big.bin", 0, 0, "").path
    record.parent.mkdir(parents=True)
    record.write_text("{}")
    (Path(node.storage_root) / "d").mkdir()
    (Path(node.storage_root) / "d" / "big.bin").write_bytes(b"whole")
    cast = transfer_create(source=node, file_name="d/big.bin", targets=[peer])
    response = staff_api.delete("/api/v1/nodes/node_2/files/d/big.bin.part")
    assert response.status_code == 409, response.json()
    assert part.exists()

    Transfer.objects.filter(pk=cast.pk).update(status=Transfer.Status.FAILED)
    assert api.delete("/api/v1/nodes/node_2/files/d/big.bin.part").status_code == 403
    assert staff_api.delete("/api/v1/nodes/node_2/files/d/big.bin.part").status_code == 204
    assert not part.exists() and not record.exists()
    assert staff_api.delete("/api/v1/nodes/node_2/files/d/big.bin.part").status_code == 404
    assert staff_api.delete("/api/v1/nodes/node_2/files/../x.part").status_code == 400


# --- generator ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "expected"),
    [(0, 0), (1, 1), ("4097", 4097), ("10KB", 10240), ("1.5MiB", 1572864), ("5MB", 5 * 1024**2)],
)
@pytest.mark.parametrize("content", ["text", "random", "pattern"])
def test_it_generates_files_of_the_exact_size(api, node, settings, size, expected: int, content: str) -> None:
    response = api.post(
        "/api/v1/nodes/node_1/generate/", {"name": "gen/f.bin", "size": size, "content": content}, format="json"
    )
    assert response.status_code == 201, response.json()
    path = Path(node.storage_root) / "gen" / "f.bin"
    assert path.stat().st_size == expected
    file = response.json()["file"]
    assert file["size"] == expected
    assert file["sha256"] == sha256_of(path)
    assert response.json()["transfer"] is None
    cached = ManifestCache(Path(node.storage_root)).get("gen/f.bin", path, settings.CASTRAY_CHUNK_SIZE)
    assert cached == compute_manifest(path, settings.CASTRAY_CHUNK_SIZE)
    if content == "pattern" and expected:
        data = path.read_bytes()
        assert all(data[i] == i % 256 for i in {0, 255, 256, expected - 1} if i < expected)
    if content == "text" and expected > 100:
        assert path.read_bytes()[:17] == b"CastRay test data"


def test_generated_content_continues_across_blocks(api, node) -> None:
    # 4 MiB blocks: the text must go on seamlessly past a block boundary.
    response = api.post(
        "/api/v1/nodes/node_1/generate/", {"name": "t.txt", "size": "9MiB", "content": "text"}, format="json"
    )
    assert response.status_code == 201
    data = (Path(node.storage_root) / "t.txt").read_bytes()
    line = data[: data.index(b"\n") + 1]
    assert data == (line * (len(data) // len(line) + 1))[: len(data)]


def test_presets_give_their_sizes(api, node) -> None:
    presets = api.get("/api/v1/generator/presets/").json()
    assert presets["content_types"] == ["text", "random", "pattern"]
    assert {k: v["size_bytes"] for k, v in presets["presets"].items()} == {
        "tiny": 1024,
        "small": 10 * 1024,
        "medium": 100 * 1024,
        "large": 1024**2,
        "huge": 10 * 1024**2,
        "massive": 100 * 1024**2,
    }
    response = api.post("/api/v1/nodes/node_1/generate/", {"name": "p.bin", "preset": "small"}, format="json")
    assert response.status_code == 201
    assert (Path(node.storage_root) / "p.bin").stat().st_size == 10 * 1024


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"name": "x", "size": "ten"}, "size", 400),
        ({"name": "x", "size": "10XB"}, "size", 400),
        ({"name": "x", "size": -5}, "size", 400),
        ({"name": "x", "size": True}, "size", 400),
        ({"name": "x", "size": "9" * 400}, "size", 400),
        ({"name": "x"}, "size", 400),
        ({"name": "x", "size": 1, "preset": "tiny"}, "size", 400),
        ({"name": "x", "preset": "gigantic"}, "preset", 400),
        ({"name": "x", "size": 1, "content": "zeros"}, "content", 400),
        ({"name": "../x", "size": 1}, "file_name", 400),
        ({"name": "x", "size": "2GiB"}, "size", 400),
        ({"name": "x", "size": 1, "cast": {"targets": ["node_77"]}}, "cast.targets", 400),
        ({"name": "x", "size": 1, "cast": {"targets": ["node_1"]}}, "targets", 400),
    ],
)
def test_bad_generator_requests_are_4xx_and_write_nothing(api, node, settings, body, field: str, status: int) -> None:
    settings.CASTRAY_MAX_UPLOAD_SIZE = 1024**3
    response = api.post("/api/v1/nodes/node_1/generate/", body, format="json")
    assert response.status_code == status, response.json()
    assert response.json()["message"].startswith(f"{field}:"), response.json()
    assert not [p for p in Path(node.storage_root).iterdir() if p.name != META_DIR]


def test_an_existing_name_is_not_overwritten_unless_asked(api, node) -> None:
    (Path(node.storage_root) / "x.bin").write_bytes(b"keep")
    response = api.post("/api/v1/nodes/node_1/generate/", {"name": "x.bin", "size": 10}, format="json")
    assert response.status_code == 409
    assert (Path(node.storage_root) / "x.bin").read_bytes() == b"keep"
    body = {"name": "x.bin", "size": 10, "overwrite": True}
    assert api.post("/api/v1/nodes/node_1/generate/", body, format="json").status_code == 201
    assert (Path(node.storage_root) / "x.bin").stat().st_size == 10


def test_it_generates_and_casts_at_once(api, node, peer, alice) -> None:
    body = {"name": "cast.bin", "size": "64KB", "cast": {"targets": ["node_2"], "fan_out": 2, "priority": 5}}
    response = api.post("/api/v1/nodes/node_1/generate/", body, format="json")
    assert response.status_code == 201, response.json()
    transfer = Transfer.objects.get(pk=response.json()["transfer"]["id"])
    assert transfer.file_name == "cast.bin"
    assert transfer.source == node and transfer.requested_by == alice
    assert (transfer.fan_out, transfer.priority) == (2, 5)
    assert [t.node.name for t in transfer.targets.all()] == ["node_2"]
    assert response.json()["transfer"]["recipients"][0]["node"] == "node_2"
