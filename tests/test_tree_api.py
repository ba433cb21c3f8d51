"""The API's side of directory casts without Ray: creating one, and the kind filter."""

from __future__ import annotations

from pathlib import Path

import pytest
from rest_framework.test import APIClient

from nodes.services import node_create
from transfers import services
from transfers.models import Transfer

pytestmark = pytest.mark.django_db


def test_a_directory_path_is_accepted_and_transfers_filter_by_kind(api, storage) -> None:
    source = node_create(name="src")
    node_create(name="dst")
    (Path(source.storage_root) / "ckpt").mkdir(parents=True)
    (Path(source.storage_root) / "one.bin").write_bytes(b"1")
    body = {"source": "src", "targets": ["dst"]}
    made = api.post("/api/v1/transfers/", {**body, "file_name": "ckpt", "mirror": True}, format="json")
    assert made.status_code == 201, made.json()
    assert made.json()["mirror"] is True
    assert api.post("/api/v1/transfers/", {**body, "file_name": "one.bin"}, format="json").status_code == 201
    # The kind is known once the source has answered; before that every cast reads as a file.
    Transfer.objects.filter(pk=made.json()["id"]).update(is_directory=True, files=3)
    listed = api.get("/api/v1/transfers/?is_directory=true").json()["results"]
    assert [(t["file_name"], t["files"]) for t in listed] == [("ckpt", 3)]
    assert [t["file_name"] for t in api.get("/api/v1/transfers/?is_directory=false").json()["results"]] == ["one.bin"]
    assert api.get("/api/v1/transfers/?is_directory=yes").status_code == 400


def _started_directory_cast(api, storage, files: int) -> int:  # type: ignore[no-untyped-def]
    source = node_create(name="src")
    node_create(name="dst")
    (Path(source.storage_root) / "ckpt").mkdir(parents=True)
    made = api.post("/api/v1/transfers/", {"source": "src", "targets": ["dst"], "file_name": "ckpt"}, format="json")
    transfer = Transfer.objects.get(pk=made.json()["id"])
    manifest = [(f"part-{i:02}.bin", i, f"{i:064x}") for i in reversed(range(files))]
    services.transfer_start(
        transfer=transfer,
        size=sum(range(files)),
        sha256="d" * 64,
        tree={},
        chunk_size=1024,
        files=files,
        manifest=manifest,
    )
    return transfer.pk


def test_a_directory_casts_files_are_listed_by_path_and_paginated(api, storage) -> None:
    pk = _started_directory_cast(api, storage, files=5)
    first = api.get(f"/api/v1/transfers/{pk}/files/?limit=2").json()
    assert first["count"] == 5
    assert first["results"] == [
        {"path": "part-00.bin", "size": 0, "sha256": "0" * 64},
        {"path": "part-01.bin", "size": 1, "sha256": f"{1:064x}"},
    ]
    rest = api.get(first["next"]).json()
    assert [f["path"] for f in rest["results"]] == ["part-02.bin", "part-03.bin"]
    # A recovered cast starts again: the source's new answer replaces the listing.
    transfer = Transfer.objects.get(pk=pk)
    services.transfer_start(
        transfer=transfer, size=7, sha256="e" * 64, tree={}, chunk_size=1024, files=1, manifest=[("only", 7, "f" * 64)]
    )
    assert api.get(f"/api/v1/transfers/{pk}/files/").json()["results"] == [
        {"path": "only", "size": 7, "sha256": "f" * 64}
    ]


def test_the_file_listing_needs_a_login_and_a_directory_cast(api, storage) -> None:
    pk = _started_directory_cast(api, storage, files=1)
    assert APIClient().get(f"/api/v1/transfers/{pk}/files/").status_code in (401, 403)
    single = Transfer.objects.create(source=Transfer.objects.get(pk=pk).source, file_name="one.bin")
    answer = api.get(f"/api/v1/transfers/{single.pk}/files/")
    assert answer.status_code == 404
    assert "not a directory cast" in answer.json()["message"]
    assert api.get("/api/v1/transfers/999999/files/").status_code == 404
    assert api.get("/api/v1/transfers/abc/files/").status_code == 404
