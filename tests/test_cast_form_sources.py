"""The cast form's directory and URL sources, with the Django test client."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client

from nodes.models import Node
from nodes.services import node_create
from transfers.models import Transfer

pytestmark = pytest.mark.django_db

BASE = {
    "source": "node_1",
    "target_choice": "nodes",
    "targets": ["node_2"],
    "mode": "tcp",
    "fan_out": "0",
    "priority": "0",
}


@pytest.fixture
def nodes(storage: Path) -> list[Node]:
    made = [node_create(name=f"node_{i}") for i in (1, 2)]
    Node.objects.update(status=Node.Status.ONLINE, address="10.0.0.5", port=47000)
    root = Path(made[0].storage_root)
    (root / "ckpt" / "shards").mkdir(parents=True)
    (root / "ckpt" / "config.json").write_bytes(b"x" * 24)
    (root / "ckpt" / "shards" / "a.bin").write_bytes(b"y" * 1000)
    (root / "empty").mkdir()
    (root / "hello.txt").write_text("hello")
    return made


def storage_listing(node: Node) -> list[str]:
    return sorted(p.relative_to(node.storage_root).as_posix() for p in Path(node.storage_root).rglob("*"))


def test_the_form_offers_the_sources_directories_marked_as_such(browser: Client, nodes: list[Node]) -> None:
    text = browser.get("/cast/").content.decode()
    assert '<option value="ckpt" data-kind="dir" >ckpt/ (dir, 2 files, 1 KiB)</option>' in text
    assert '<option value="ckpt/shards" data-kind="dir" >ckpt/shards/ (dir, 1 file, 1000 B)</option>' in text
    assert 'value="empty"' not in text  # nothing in it to cast
    assert '<option value="hello.txt"' in text


def test_choosing_a_directory_creates_a_directory_cast(browser: Client, nodes: list[Node]) -> None:
    response = browser.post("/cast/", {**BASE, "file_source": "existing", "file_name": "ckpt", "mirror": "on"})
    transfer = Transfer.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/transfers/{transfer.pk}/"
    assert (transfer.file_name, transfer.origin, transfer.mirror) == ("ckpt", "", True)


def test_a_url_source_creates_an_origin_cast_without_credentials(browser: Client, nodes: list[Node]) -> None:
    url = "https://reader:secret@data.example/models/weights.bin?X-Amz-Signature=abc&v=2"
    response = browser.post("/cast/", {**BASE, "file_source": "url", "origin": url})
    transfer = Transfer.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/transfers/{transfer.pk}/"
    assert transfer.file_name == "weights.bin" and transfer.mirror is False
    assert transfer.origin.startswith("https://data.example/models/weights.bin")
    assert "secret" not in transfer.origin and "abc" not in transfer.origin
    named = browser.post(
        "/cast/", {**BASE, "file_source": "url", "origin": "s3://bucket/runs/", "origin_name": "runs/7"}
    )
    assert named.status_code == 302
    assert Transfer.objects.filter(origin="s3://bucket/runs/", file_name="runs/7").exists()


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"file_source": "url", "origin": ""}, "origin", "give an http://"),
        ({"file_source": "url", "origin": "ftp://data.example/x.bin"}, "origin", "ftp"),
        ({"file_source": "url", "origin": "http://169.254.169.254/latest/x"}, "origin", "refused"),
        ({"file_source": "url", "origin": "https://data.example/x.bin", "origin_name": "../x"}, "origin_name", ".."),
        ({"file_source": "url", "origin": "https://data.example/x.bin", "targets": []}, "targets", "tick at least one"),
        ({"file_source": "existing", "file_name": "/etc"}, "file_name", "absolute"),
        ({"file_source": "existing", "file_name": "ckpt", "targets": ["node_1"]}, "targets", "source"),
    ],
)
def test_a_refused_form_creates_nothing_and_says_why(
    browser: Client, nodes: list[Node], fields: dict[str, object], field: str, reason: str
) -> None:
    before = storage_listing(nodes[0])
    response = browser.post("/cast/", {**BASE, **fields})
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors and reason in " ".join(errors[field]), errors
    assert Transfer.objects.count() == 0
    assert storage_listing(nodes[0]) == before
