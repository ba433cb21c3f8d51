"""The API's side of directory casts without Ray: creating one, and the kind filter."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodes.services import node_create
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
