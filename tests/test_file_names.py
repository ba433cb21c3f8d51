"""Names the file system refuses, and names that would disguise themselves, are a 400 everywhere.

One check (dataplane.storage.clean_name) holds for every path that takes a name: the files API
(upload, generate, download with and without Range, delete), casts' `file_name` and `dest_name`,
and the compatibility endpoints. A part of a name may have 255 bytes of UTF-8 (a file's own name
250: receivers add `.part`), a whole name 1024; control and format characters are refused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from dataplane.storage import META_DIR, UnsafePath, clean_name
from nodes.models import Node
from nodes.services import node_create
from tests.test_files import upload
from transfers.models import Transfer

pytestmark = pytest.mark.django_db

TOO_LONG = {
    "300 bytes": "L" * 300,
    "200 x é, 400 bytes": "é" * 200,
    "a file's name of 251 bytes": "dir/" + "f" * 251,
    "1025 bytes in all (525 characters)": "/".join(["é" * 100] * 5) + "/" + "f" * 20,
}
DISGUISED = {
    "U+202E right-to-left override": "report\u202etxt.exe",
    "U+2066 left-to-right isolate": "a\u2066b.txt",
    "U+200F right-to-left mark": "a\u200fb.txt",
    "U+2028 line separator": "a\u2028b.txt",
    "U+0085 next line": "a\x85b.txt",
    "U+200B zero width space": "a\u200bb.txt",
}
REFUSED = {**TOO_LONG, **DISGUISED}


@pytest.fixture(autouse=True)
def _fresh_throttles() -> None:
    cache.clear()


@pytest.fixture
def nodes(storage: Path) -> tuple[Node, Node]:
    """node_1, which has hello.txt, and node_2."""
    made = node_create(name="node_1"), node_create(name="node_2")
    for node in made:
        Path(node.storage_root).mkdir(parents=True)
    (Path(made[0].storage_root) / "hello.txt").write_text("hello")
    return made


def _cast(client: APIClient, **body: object):  # type: ignore[no-untyped-def]
    body = {"source": "node_1", "file_name": "hello.txt", "targets": ["node_2"], **body}
    return client.post("/api/v1/transfers/", body, format="json")


def _file_url(name: str) -> str:
    return "/api/v1/nodes/node_1/files/" + quote(name)


ENDPOINTS: dict[str, Callable[[APIClient, str], object]] = {
    "upload name": lambda c, name: upload(c, "node_1", b"data", name=name),
    "generate": lambda c, name: c.post("/api/v1/nodes/node_1/generate/", {"name": name, "size": 10}, format="json"),
    "download": lambda c, name: c.get(_file_url(name)),
    "range download": lambda c, name: c.get(_file_url(name), HTTP_RANGE="bytes=0-1"),
    "delete": lambda c, name: c.delete(_file_url(name)),
    "cast file_name": lambda c, name: _cast(c, file_name=name),
    "cast dest_name": lambda c, name: _cast(c, dest_name=name),
    "compat manual transfer": lambda c, name: c.post(
        "/api/file-transfers/manual",
        {"sender_id": "node_1", "file_name": name, "recipients": ["node_2"]},
        format="json",
    ),
    "compat generate": lambda c, name: c.post(
        "/api/file-generator/create", {"node_id": "node_1", "file_name": name, "size": "1KB"}, format="json"
    ),
    "compat generate and transfer": lambda c, name: c.post(
        "/api/file-generator/create-and-transfer",
        {"sender_id": "node_1", "file_name": name, "size": "1KB", "recipients": ["node_2"]},
        format="json",
    ),
}


@pytest.mark.parametrize("name", REFUSED.values(), ids=REFUSED.keys())
@pytest.mark.parametrize("endpoint", ENDPOINTS.values(), ids=ENDPOINTS.keys())
def test_every_endpoint_refuses_the_name_with_400(staff_api, nodes, endpoint, name: str) -> None:
    source, target = nodes
    response = endpoint(staff_api, name)
    assert response.status_code == 400, response.content
    message = response.json()["message"]
    if name in TOO_LONG.values():
        assert "bytes in UTF-8" in message and ("1024 bytes" in message or "at most 255 bytes" in message), message
    else:
        assert "control and format characters are refused" in message, message
    # Nothing was written or queued.
    assert {p.name for p in Path(source.storage_root).iterdir()} <= {META_DIR, "hello.txt"}
    assert not list(Path(source.storage_root).glob(f"{META_DIR}/staging/*"))
    assert not list(Path(target.storage_root).iterdir())
    assert not Transfer.objects.exists()


def test_an_uploaded_file_s_own_name_is_checked_too(api, nodes) -> None:
    response = upload(api, "node_1", b"data", filename="é" * 200)
    assert response.status_code == 400, response.content
    assert "bytes in UTF-8" in response.json()["message"]


def test_names_at_the_limits_work_end_to_end(api, nodes) -> None:
    # 255 bytes for a directory, 250 for the file (with `.part`, 255 at a receiver).
    name = "d" * 255 + "/" + "é" * 125
    response = upload(api, "node_1", b"data", name=name)
    assert response.status_code == 201, response.content
    assert b"".join(api.get(_file_url(name)).streaming_content) == b"data"
    assert _cast(api, file_name=name, dest_name="e" * 250).status_code == 201


def test_clean_name_counts_bytes_not_characters() -> None:
    assert clean_name("é" * 125) == "é" * 125
    for name in ("é" * 126, "x" * 251, "x" * 256 + "/y"):
        with pytest.raises(UnsafePath, match="bytes in UTF-8"):
            clean_name(name)
    longest = "/".join(["d" * 200] * 5) + "/" + "f" * 19
    assert len(longest.encode()) == 1024 and clean_name(longest) == longest


@pytest.mark.parametrize("name", [*DISGUISED.values(), "a\x00b", "a\x7fb", "a\ud800b", "a\ufeffb", "a\u2029b"])
def test_clean_name_refuses_control_and_format_characters(name: str) -> None:
    with pytest.raises(UnsafePath, match="control and format characters are refused"):
        clean_name(name)
