"""Web pages with the Django test client: who sees them, what they show, what the cast form does.

Alice is an ordinary logged-in user (she may cast and read); anonymous visitors are sent to
the login page.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from clusters.models import Cluster
from dataplane.storage import ManifestCache
from nodes.models import Node, NodeGroup
from nodes.services import node_create
from transfers import services
from transfers.models import Target, Transfer
from transfers.templatetags.castray import ago, rate, seconds, size

pytestmark = pytest.mark.django_db


@pytest.fixture
def nodes(storage: Path) -> list[Node]:
    made = [node_create(name=f"node_{i}") for i in (1, 2, 3)]
    Node.objects.update(status=Node.Status.ONLINE, address="10.0.0.5", port=47000)
    root = Path(made[0].storage_root)
    root.mkdir(parents=True)
    (root / "hello.txt").write_text("hello")
    return [Node.objects.get(pk=n.pk) for n in made]


@pytest.fixture
def finished_cast(nodes: list[Node], alice: User) -> Transfer:
    """A completed relay cast node_1 -> node_2 -> node_3 of 10 MB in 2 s."""
    transfer = services.transfer_create(
        source=nodes[0], file_name="hello.txt", targets=nodes[1:], requested_by=alice, fan_out=1
    )
    start = timezone.now() - timedelta(seconds=5)
    Transfer.objects.filter(pk=transfer.pk).update(
        status=Transfer.Status.COMPLETED,
        size=10_000_000,
        sha256="ab" * 32,
        started_at=start,
        finished_at=start + timedelta(seconds=2),
        source_bytes_sent=10_000_000,
        tree={"root": "node_1", "fan_out": 1, "edges": [["node_1", "node_2"], ["node_2", "node_3"]]},
    )
    Target.objects.filter(transfer=transfer).update(status=Target.Status.COMPLETED, bytes_done=10_000_000, rate=5e6)
    transfer.refresh_from_db()
    return transfer


PAGES = ["/", "/cast/", "/transfers/", "/nodes/", "/nodes/node_1/", "/clusters/"]


def test_anonymous_visitors_are_sent_to_login(client: Client, finished_cast: Transfer) -> None:
    for url in [*PAGES, f"/transfers/{finished_cast.pk}/", f"/transfers/{finished_cast.pk}/tree"]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/?next="), url


def test_every_page_renders_for_a_logged_in_user(browser: Client, finished_cast: Transfer) -> None:
    Cluster.objects.create(name="default", status=Cluster.Status.CONNECTED, ray_version="2.60.0")
    for url in [*PAGES, f"/transfers/{finished_cast.pk}/"]:
        response = browser.get(url)
        assert response.status_code == 200, url
        assert b"castray.css" in response.content and b"castray.js" in response.content, url
        assert b"cluster-banner" in response.content and b'class="banner hidden"' in response.content, url


def test_the_login_page_logs_in_and_lands_on_the_dashboard(client: Client, alice: User) -> None:
    assert client.get("/accounts/login/").status_code == 200
    response = client.post("/accounts/login/", {"username": "alice", "password": "alice-password"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert client.get("/").status_code == 302


def test_a_degraded_cluster_shows_a_banner_saying_what_failed(browser: Client, nodes: list[Node]) -> None:
    Cluster.objects.create(name="lab", status=Cluster.Status.DEGRADED, last_error="cannot reach Ray at 10.0.0.9:6379")
    for url in PAGES:
        text = browser.get(url).content.decode()
        assert 'class="banner"' in text, url
        assert "cannot reach Ray at 10.0.0.9:6379" in text, url
        assert "Still working" in text, url


def test_the_dashboard_shows_nodes_active_casts_and_history(browser: Client, finished_cast: Transfer) -> None:
    active = services.transfer_create(
        source=Node.objects.get(name="node_2"), file_name="big.bin", targets=[Node.objects.get(name="node_3")]
    )
    text = browser.get("/").content.decode()
    for name in ("node_1", "node_2", "node_3"):
        assert f'href="/nodes/{name}/"' in text
    assert f'data-transfer="{active.pk}"' in text and "big.bin" in text
    assert f'href="/transfers/{finished_cast.pk}/"' in text
    assert "9.5 MiB" in text  # 10,000,000 bytes, for people


def test_the_transfer_page_shows_targets_totals_and_the_tree(browser: Client, finished_cast: Transfer) -> None:
    Transfer.objects.filter(pk=finished_cast.pk).update(bound_seconds=1.6)
    text = browser.get(f"/transfers/{finished_cast.pk}/").content.decode()
    assert text.count('role="progressbar"') == 2
    assert 'aria-valuenow="100"' in text
    assert "2.0 s" in text  # duration
    assert "5 MB/s" in text  # 10 MB in 2 s
    assert "1.25×" in text  # 2 s against a lower bound of 1.6 s
    assert "Copies from source" in text and "1.00 copies" in text  # two receivers, one copy from the source
    assert '<svg class="tree"' in text
    assert text.count('class="tree-node') == 3 and text.count('class="tree-link"') == 2
    assert 'id="transfer-data"' in text
    fragment = browser.get(f"/transfers/{finished_cast.pk}/tree").content.decode()
    assert 'data-node="node_3"' in fragment


def test_a_missing_transfer_or_node_is_404(browser: Client, nodes: list[Node]) -> None:
    assert browser.get("/transfers/9999/").status_code == 404
    assert browser.get("/nodes/nope/").status_code == 404


def test_casting_an_existing_file_to_chosen_nodes(browser: Client, nodes: list[Node], alice: User) -> None:
    response = browser.post(
        "/cast/",
        {
            "source": "node_1",
            "file_source": "existing",
            "file_name": "hello.txt",
            "target_choice": "nodes",
            "targets": ["node_2", "node_3"],
            "mode": "tcp",
            "fan_out": "2",
            "priority": "5",
        },
    )
    transfer = Transfer.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/transfers/{transfer.pk}/"
    assert transfer.file_name == "hello.txt" and transfer.fan_out == 2 and transfer.priority == 5
    assert transfer.requested_by == alice
    assert sorted(transfer.targets.values_list("node__name", flat=True)) == ["node_2", "node_3"]


def test_generating_a_file_writes_exact_bytes_and_its_manifest(browser: Client, nodes: list[Node]) -> None:
    response = browser.post(
        "/cast/",
        {
            "source": "node_1",
            "file_source": "generate",
            "gen_size": "1.5MB",
            "gen_content": "pattern",
            "gen_name": "made.bin",
            "target_choice": "all",
            "mode": "tcp",
            "fan_out": "0",
            "priority": "0",
        },
    )
    assert response.status_code == 302
    path = Path(nodes[0].storage_root) / "made.bin"
    data = path.read_bytes()
    assert len(data) == 1536 * 1024
    assert data[:300] == bytes(range(256)) + bytes(range(44))
    assert ManifestCache(nodes[0].storage_root).peek_sha256("made.bin", path) == hashlib.sha256(data).hexdigest()
    transfer = Transfer.objects.get()
    assert transfer.cast_type == Transfer.Cast.BROADCAST and transfer.targets.count() == 2


def test_uploading_a_file_stores_it_under_a_clean_name(browser: Client, nodes: list[Node]) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    group = NodeGroup.objects.create(name="pair")
    group.nodes.set(nodes[1:])
    upload = SimpleUploadedFile("../../etc/report.csv", b"a,b\n1,2\n")
    response = browser.post(
        "/cast/",
        {
            "source": "node_1",
            "file_source": "upload",
            "upload": upload,
            "target_choice": "group",
            "group": "pair",
            "mode": "tcp",
            "fan_out": "0",
            "priority": "0",
        },
    )
    assert response.status_code == 302, response.content
    assert (Path(nodes[0].storage_root) / "report.csv").read_bytes() == b"a,b\n1,2\n"
    transfer = Transfer.objects.get()
    assert transfer.file_name == "report.csv" and transfer.group == group


def test_the_cast_form_explains_what_to_fix(browser: Client, nodes: list[Node]) -> None:
    base = {"source": "node_1", "mode": "tcp", "fan_out": "0", "priority": "0"}
    cases = [
        ({"file_source": "existing", "file_name": "hello.txt", "target_choice": "nodes"}, "tick at least one target"),
        ({"file_source": "existing", "file_name": "", "target_choice": "all"}, "choose a file"),
        (
            {"file_source": "generate", "gen_size": "ten", "gen_content": "text", "target_choice": "all"},
            "is not a size",
        ),
        (
            {"file_source": "existing", "file_name": "../x", "target_choice": "nodes", "targets": ["node_2"]},
            "contains &#x27;..&#x27;",
        ),
        (
            {"file_source": "existing", "file_name": "hello.txt", "target_choice": "nodes", "targets": ["node_1"]},
            "a node cannot cast to itself",
        ),
    ]
    for fields, message in cases:
        response = browser.post("/cast/", {**base, **fields})
        assert response.status_code == 200, fields
        assert message in response.content.decode(), (fields, message)
    assert not Transfer.objects.exists()


def test_uploads_over_the_limit_and_names_taken_are_refused(browser: Client, nodes: list[Node], settings) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.CASTRAY_MAX_UPLOAD_SIZE = 4
    base = {"source": "node_1", "target_choice": "all", "mode": "tcp", "fan_out": "0", "priority": "0"}
    upload = SimpleUploadedFile("a.bin", b"12345")
    response = browser.post("/cast/", {**base, "file_source": "upload", "upload": upload})
    assert "larger than the limit of 4 B" in response.content.decode()
    taken = {**base, "file_source": "generate", "gen_size": "3", "gen_content": "text", "gen_name": "hello.txt"}
    response = browser.post("/cast/", taken)
    assert "hello.txt already exists" in response.content.decode()
    assert (Path(nodes[0].storage_root) / "hello.txt").read_text() == "hello"
    assert not Transfer.objects.exists()


def test_cancel_and_retry_from_the_transfer_page(browser: Client, nodes: list[Node]) -> None:
    transfer = services.transfer_create(source=nodes[0], file_name="hello.txt", targets=nodes[1:], priority=3)
    response = browser.post(f"/transfers/{transfer.pk}/cancel")
    assert response.status_code == 302
    transfer.refresh_from_db()
    assert transfer.status == Transfer.Status.CANCELLED
    response = browser.post(f"/transfers/{transfer.pk}/retry")
    again = Transfer.objects.exclude(pk=transfer.pk).get()
    assert response["Location"] == f"/transfers/{again.pk}/"
    assert (again.source, again.file_name, again.priority) == (nodes[0], "hello.txt", 3)
    assert sorted(again.targets.values_list("node__name", flat=True)) == ["node_2", "node_3"]
    assert browser.get(f"/transfers/{transfer.pk}/cancel").status_code == 405


def test_history_filters_and_searches(browser: Client, finished_cast: Transfer, nodes: list[Node]) -> None:
    other = services.transfer_create(source=nodes[1], file_name="other.iso", targets=[nodes[2]])
    listed = browser.get("/transfers/").content.decode()
    assert f'href="/transfers/{finished_cast.pk}/"' in listed and f'href="/transfers/{other.pk}/"' in listed
    only_done = browser.get("/transfers/?status=completed").content.decode()
    assert f'href="/transfers/{other.pk}/"' not in only_done and f'href="/transfers/{finished_cast.pk}/"' in only_done
    searched = browser.get("/transfers/?q=other").content.decode()
    assert f'href="/transfers/{other.pk}/"' in searched and f'href="/transfers/{finished_cast.pk}/"' not in searched
    by_node = browser.get("/transfers/?node=node_1").content.decode()
    assert f'href="/transfers/{other.pk}/"' not in by_node
    by_id = browser.get(f"/transfers/?q=%23{other.pk}").content.decode()
    assert f'href="/transfers/{other.pk}/"' in by_id


def test_the_node_page_lists_its_files_and_casts(browser: Client, finished_cast: Transfer) -> None:
    text = browser.get("/nodes/node_1/").content.decode()
    assert "hello.txt" in text and "5 B" in text
    assert f'href="/transfers/{finished_cast.pk}/"' in text
    assert browser.get("/nodes/node_3/").status_code == 200


def test_numbers_are_formatted_for_people() -> None:
    assert size(1288490188) == "1.2 GiB"
    assert size(512) == "512 B"
    assert size(10_000_000) == "9.5 MiB"
    assert size(None) == "—"
    assert rate(340e6) == "340 MB/s"
    assert rate(1.25e9) == "1.2 GB/s"
    assert seconds(0.42) == "0.4 s" and seconds(75) == "1 min 15 s" and seconds(3720) == "1 h 2 min"
    assert ago(timezone.now() - timedelta(seconds=3)) == "3 s ago"
    assert ago(timezone.now() - timedelta(hours=2, minutes=5)) == "2 h ago"
    assert ago(None) == "never"


def test_a_refused_cast_form_creates_no_file_and_no_cast(browser: Client, nodes: list[Node]) -> None:
    # Everything is checked before the file is generated or stored: a bad name at the
    # targets must not leave a file behind that makes the corrected form fail "already exists".
    from django.core.files.uploadedfile import SimpleUploadedFile

    root = Path(nodes[0].storage_root)

    def files() -> list[str]:  # every file, staging included
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    base = {"source": "node_1", "target_choice": "all", "mode": "tcp", "fan_out": "0", "priority": "0"}
    generate = {**base, "file_source": "generate", "gen_size": "1KB", "gen_content": "text", "gen_name": "new.bin"}
    for fields in (
        {**generate, "dest_name": "../elsewhere.bin"},
        {**generate, "target_choice": "group"},  # no group chosen
        {**base, "file_source": "upload", "upload": SimpleUploadedFile("up.bin", b"data"), "dest_name": "/abs"},
    ):
        response = browser.post("/cast/", fields)
        assert response.status_code == 200, fields
        assert b"errorlist" in response.content, fields
    assert files() == ["hello.txt"]
    assert not Transfer.objects.exists()

    # Corrected, the same form goes through.
    response = browser.post("/cast/", {**generate, "dest_name": "elsewhere.bin"})
    assert response.status_code == 302
    assert (root / "new.bin").stat().st_size == 1024
    assert Transfer.objects.get().dest_name == "elsewhere.bin"


def test_generating_over_an_existing_name_needs_the_overwrite_box(browser: Client, nodes: list[Node]) -> None:
    taken = {
        "source": "node_1",
        "target_choice": "all",
        "mode": "tcp",
        "fan_out": "0",
        "priority": "0",
        "file_source": "generate",
        "gen_size": "3",
        "gen_content": "text",
        "gen_name": "hello.txt",
    }
    response = browser.post("/cast/", taken)
    text = response.content.decode()
    assert "hello.txt already exists" in text and 'name="overwrite"' in text
    assert (Path(nodes[0].storage_root) / "hello.txt").read_text() == "hello"
    assert not Transfer.objects.exists()

    response = browser.post("/cast/", {**taken, "overwrite": "on"})
    assert response.status_code == 302
    assert (Path(nodes[0].storage_root) / "hello.txt").stat().st_size == 3
    assert Transfer.objects.get().file_name == "hello.txt"


def test_limits_are_shown_in_units_people_read(browser: Client, nodes: list[Node]) -> None:
    # The default CASTRAY_MAX_UPLOAD_SIZE is 10 GiB, not "10737418240 bytes".
    fields = {"source": "node_1", "target_choice": "all", "mode": "tcp", "fan_out": "0", "priority": "0"}
    response = browser.post("/cast/", {**fields, "file_source": "generate", "gen_size": "11GiB", "gen_content": "text"})
    text = response.content.decode()
    assert "at most 10 GiB may be generated here" in text and "10737418240" not in text


def test_the_cancel_button_asks_first(browser: Client, nodes: list[Node]) -> None:
    transfer = services.transfer_create(source=nodes[0], file_name="hello.txt", targets=nodes[1:])
    text = browser.get(f"/transfers/{transfer.pk}/").content.decode()
    form = text[text.index('id="cancel-form"') - 120 : text.index('id="cancel-form"') + 200]
    assert f'data-confirm="Cancel cast #{transfer.pk}?' in form, form


def test_favicon_ico_is_served(client: Client) -> None:
    response = client.get("/favicon.ico", follow=True)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("image/svg+xml")
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"<svg" in body


def test_a_directory_casts_page_shows_files_done_beside_bytes(browser: Client, finished_cast: Transfer) -> None:
    single = browser.get(f"/transfers/{finished_cast.pk}/").content.decode()
    assert 'id="total-files" hidden' in single and 'data-field="files" hidden' in single
    Transfer.objects.filter(pk=finished_cast.pk).update(is_directory=True, files=3)
    Target.objects.filter(transfer=finished_cast, node__name="node_2").update(files_done=3)
    Target.objects.filter(transfer=finished_cast, node__name="node_3").update(files_done=1)
    text = browser.get(f"/transfers/{finished_cast.pk}/").content.decode()
    assert 'id="total-files" hidden' not in text and "a directory of <span" in text
    assert f'href="/api/v1/transfers/{finished_cast.pk}/files/"' in text
    assert "<br>3 / 3 files</span>" in text and "<br>1 / 3 files</span>" in text
