"""What a cast's records say once it ran: the bytes a cancelled cast moved, the cast rate, and
the samples behind the rate chart. The worker's steps are driven through the services it calls.

node_1 casts to node_2 and node_3; sizes are in MiB as people read them on the page.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from nodes.models import Node
from nodes.services import node_create
from transfers import services
from transfers.models import Target, Transfer
from transfers.samples import MAX_SAMPLES, SAMPLE_SECONDS, add_sample

pytestmark = pytest.mark.django_db
MiB = 1024 * 1024


@pytest.fixture
def running(storage: Path) -> Transfer:
    """A cast of 100 MiB claimed and started by a worker: node_1 to node_2 and node_3."""
    made = [node_create(name=f"node_{i}") for i in (1, 2, 3)]
    Node.objects.update(status=Node.Status.ONLINE)
    services.transfer_create(source=made[0], file_name="big.bin", targets=made[1:])
    transfer = services.transfer_claim(worker_id="w", lease_seconds=30, limit=1)[0]
    return services.transfer_start(transfer=transfer, size=100 * MiB, sha256="ab" * 32, tree={}, chunk_size=MiB)


def target(transfer: Transfer, node: str) -> Target:
    return transfer.targets.get(node__name=node)


def row(bytes_done: int, *, received: int | None = None, started: float, at: float, **more: Any) -> dict[str, Any]:
    """A receiver's progress row (dataplane.contract.ProgressRow) as the worker passes it on."""
    received = bytes_done if received is None else received
    return {"status": "receiving", "bytes_done": bytes_done, "bytes_received": received, "started": started} | {
        "updated": at,
        **more,
    }


def page(browser: Client, transfer: Transfer) -> str:
    return browser.get(f"/transfers/{transfer.pk}/").content.decode()


# --- a cancelled cast ----------------------------------------------------------------------
def test_a_cancelled_cast_keeps_and_shows_what_its_targets_received(browser: Client, running: Transfer) -> None:
    node_2, node_3 = target(running, "node_2"), target(running, "node_3")
    now = time.time()
    services.target_progress(transfer=running, rows={node_2.pk: row(76 * MiB, started=now - 2, at=now - 1)})
    assert services.transfer_cancel(transfer=running)
    # The worker's last poll answers after the cancel: node_2 had gone on, node_3 had 4 MiB.
    rows = {node_2.pk: row(80 * MiB, started=now - 2, at=now), node_3.pk: row(4 * MiB, started=now - 2, at=now)}
    assert services.target_progress(transfer=running, rows=rows)

    node_2.refresh_from_db()
    node_3.refresh_from_db()
    assert (node_2.status, node_2.bytes_done, node_2.bytes_received) == ("cancelled", 80 * MiB, 80 * MiB)
    assert (node_3.status, node_3.bytes_done, node_3.bytes_received) == ("cancelled", 4 * MiB, 4 * MiB)
    running.refresh_from_db()
    assert running.status == "cancelled"
    assert running.rate is None  # no copy was delivered: 100 MiB over its duration never ran

    text = page(browser, running)
    assert "no bytes sent" not in text
    assert "targets received <span" in text and ">84 MiB<" in text
    assert "cast rate" not in text
    assert ">80 MiB<" in text and ">4 MiB<" in text  # each target's bytes
    # Until the worker records what the source sent, the page does not claim it sent nothing.
    assert '<p class="big" id="source-bytes">—</p>' in text and "the worker recorded none" in text


def test_the_worker_records_what_a_cancelled_cast_sent(browser: Client, running: Transfer) -> None:
    node_2, node_3 = target(running, "node_2"), target(running, "node_3")
    now = time.time()
    services.target_progress(transfer=running, rows={node_2.pk: row(70 * MiB, started=now - 2, at=now - 1)})
    services.transfer_cancel(transfer=running)
    cancelled_at = Transfer.objects.get(pk=running.pk).finished_at

    # The source's round returned after the cancel: node_2 stopped at 76 MiB (the receiver
    # calls that a failure), node_3 had finished just before the cancel reached it.
    results = {
        node_2.pk: {"status": "failed", "error": "the cast was cancelled", "bytes_received": 76 * MiB},
        node_3.pk: {"status": "completed", "bytes_received": 100 * MiB, "sha256": "ab" * 32},
    }
    services.transfer_record_cancelled(transfer=running, source_bytes=176 * MiB, relay_bytes=0, results=results)

    running.refresh_from_db()
    assert (running.status, running.source_bytes_sent, running.relay_bytes_sent) == ("cancelled", 176 * MiB, 0)
    assert running.finished_at == cancelled_at
    node_2.refresh_from_db()
    node_3.refresh_from_db()
    assert (node_2.status, node_2.error, node_2.bytes_received, node_2.bytes_done) == (
        "cancelled",
        "",
        76 * MiB,
        70 * MiB,
    )
    assert (node_3.status, node_3.bytes_received, node_3.bytes_done) == ("completed", 100 * MiB, 100 * MiB)
    text = page(browser, running)
    assert ">176 MiB<" in text  # source bytes
    assert "no bytes sent" not in text

    # Only a cancelled cast's bytes are recorded this way.
    Transfer.objects.filter(pk=running.pk).update(status=Transfer.Status.FAILED)
    with pytest.raises(services.CastError):
        services.transfer_record_cancelled(transfer=running, source_bytes=1)


def test_cancelling_keeps_the_bytes_targets_had(running: Transfer) -> None:
    node_2 = target(running, "node_2")
    now = time.time()
    services.target_progress(transfer=running, rows={node_2.pk: row(30 * MiB, started=now - 1, at=now)})
    services.transfer_cancel(transfer=running)
    node_2.refresh_from_db()
    assert (node_2.status, node_2.bytes_done, node_2.bytes_received) == ("cancelled", 30 * MiB, 30 * MiB)


# --- the cast rate and the "no bytes sent" note -------------------------------------------
def finish(transfer: Transfer, seconds: float, **results: dict[str, Any]) -> Transfer:
    """Record the targets' results (by node name) as if the cast had run `seconds`."""
    start = timezone.now() - timedelta(seconds=seconds)
    Transfer.objects.filter(pk=transfer.pk).update(started_at=start)
    transfer.targets.update(started_at=start)
    transfer.refresh_from_db()
    by_id = {target(transfer, name).pk: result for name, result in results.items()}
    return services.transfer_finish(
        transfer=transfer, results=by_id, source_bytes=sum(int(r.get("bytes_received") or 0) for r in results.values())
    )


def test_the_cast_rate_is_what_the_targets_that_received_the_file_got(running: Transfer) -> None:
    # node_2 held 60 MiB from an earlier cast and received 40 MiB in 2 s; node_3 was skipped.
    done = finish(
        running,
        2,
        node_2={"status": "completed", "bytes_received": 40 * MiB},
        node_3={"status": "skipped"},
    )
    assert done.status == "completed"
    assert done.rate == pytest.approx(20 * MiB, rel=0.05)  # not 100 MiB over 2 s
    assert target(done, "node_2").rate == pytest.approx(20 * MiB, rel=0.05)


def test_a_partial_cast_has_a_rate_and_a_failed_one_none(running: Transfer) -> None:
    partial = finish(
        running,
        4,
        node_2={"status": "completed", "bytes_received": 100 * MiB},
        node_3={"status": "failed", "error": "disk full", "bytes_received": 10 * MiB},
    )
    assert partial.status == "partial"
    assert partial.rate == pytest.approx(25 * MiB, rel=0.05)

    Transfer.objects.filter(pk=partial.pk).update(status=Transfer.Status.FAILED)
    partial.refresh_from_db()
    assert partial.rate is None


def test_no_bytes_sent_is_said_only_when_every_target_held_the_file(browser: Client, running: Transfer) -> None:
    failed = finish(running, 1, node_2={"status": "failed", "error": "refused"}, node_3={"status": "failed"})
    assert failed.status == "failed" and failed.source_bytes_sent == 0
    text = page(browser, failed)
    assert "no bytes sent" not in text and "targets received <span" in text

    Transfer.objects.filter(pk=failed.pk).update(status=Transfer.Status.COMPLETED)
    failed.targets.update(status=Target.Status.SKIPPED, error="")
    text = page(browser, failed)
    assert "no bytes sent: the targets held the file" in text
    assert Transfer.objects.get(pk=failed.pk).rate is None  # nothing was received


def test_the_history_shows_no_rate_for_a_cast_that_delivered_nothing(browser: Client, running: Transfer) -> None:
    Transfer.objects.filter(pk=running.pk).update(source_bytes_sent=50 * MiB)
    services.transfer_cancel(transfer=running)
    text = browser.get("/transfers/").content.decode()
    row_html = text[text.index(f'href="/transfers/{running.pk}/"') :].split("</tr>")[0]
    assert "B/s" not in row_html, row_html


# --- the rate chart's samples ----------------------------------------------------------------
def rates(samples: list[list[float]]) -> list[float]:
    """A target's receive rates between successive samples (the chart's rule)."""
    return [(b1 - b0) / (t1 - t0) for (t0, b0), (t1, b1) in zip(samples, samples[1:], strict=False)]


def test_a_completed_targets_last_sample_is_at_its_finish_not_a_spike(running: Transfer) -> None:
    # 137 MB/s reported every 0.1 s; the receiver's final report comes after its last, and
    # the worker records the result seconds later still.
    node_2 = target(running, "node_2")
    speed, start = 137e6, time.time() - 10
    size = 100 * MiB
    for i in range(1, 8):
        at = start + 0.1 * i
        services.target_progress(transfer=running, rows={node_2.pk: row(int(speed * 0.1 * i), started=start, at=at)})
    finished = start + size / speed
    final = row(size, started=start, at=finished, finished=finished) | {"status": "completed"}
    services.target_progress(transfer=running, rows={node_2.pk: final})
    services.targets_record(transfer=running, results={node_2.pk: {"status": "completed", "bytes_received": size}})

    node_2.refresh_from_db()
    assert node_2.status == "completed" and node_2.bytes_received == size
    assert node_2.samples[0] == [round(start, 3), 0]
    assert node_2.samples[-1] == [round(finished, 3), size]  # the finish, not when it was recorded
    assert max(rates(node_2.samples)) == pytest.approx(speed, rel=0.01)


def test_a_verified_final_report_records_the_target_at_once_and_samples_its_finish(running: Transfer) -> None:
    # The receiver's last row says the file is verified: the target is done now (min_ready),
    # its bytes and its last sample are the receiver's, timed when it finished.
    node_2 = target(running, "node_2")
    start = time.time() - 5
    services.target_progress(transfer=running, rows={node_2.pk: row(60 * MiB, started=start, at=start + 1)})
    done = row(100 * MiB, started=start, at=start + 2, finished=start + 2) | {
        "status": "completed",
        "sha256": "ab" * 32,
    }
    services.target_progress(transfer=running, rows={node_2.pk: done})

    node_2.refresh_from_db()
    assert (node_2.status, node_2.bytes_done, node_2.bytes_received) == ("completed", 100 * MiB, 100 * MiB)
    assert node_2.samples == [[round(start, 3), 0], [round(start + 1, 3), 60 * MiB], [round(start + 2, 3), 100 * MiB]]
    assert target(running, "node_3").status == "receiving"
    # The round's result for it, when the cast ends, changes nothing.
    services.transfer_finish(
        transfer=running, results={node_2.pk: {"status": "completed", "bytes_received": 100 * MiB}}
    )
    node_2.refresh_from_db()
    assert node_2.bytes_received == 100 * MiB and len(node_2.samples) == 3


def test_a_result_without_a_final_report_is_sampled_when_recorded(running: Transfer) -> None:
    node_2 = target(running, "node_2")
    start = time.time() - 2
    services.target_progress(transfer=running, rows={node_2.pk: row(50 * MiB, started=start, at=start + 1)})
    services.targets_record(transfer=running, results={node_2.pk: {"status": "completed", "bytes_received": 100 * MiB}})
    node_2.refresh_from_db()
    assert [b for _, b in node_2.samples] == [0, 50 * MiB, 100 * MiB]
    # The last 50 MiB over the time up to the record: late, so lower, never a spike.
    assert rates(node_2.samples)[-1] <= 50 * MiB * 1.01


def test_bytes_received_count_each_attempt_once(running: Transfer) -> None:
    node_2 = target(running, "node_2")
    start = time.time() - 10
    services.target_progress(transfer=running, rows={node_2.pk: row(30 * MiB, started=start, at=start + 1)})
    # Its relay failed: the receive reported none of the 30 MiB it took in; progress did.
    services.targets_record(transfer=running, results={node_2.pk: {"status": "failed", "error": "relay died"}})
    services.targets_retry(transfer=running, target_ids=[node_2.pk], reason="re-parented")
    again = start + 5
    second = row(50 * MiB, received=20 * MiB, started=again, at=again + 1)
    services.target_progress(transfer=running, rows={node_2.pk: second})
    node_2.refresh_from_db()
    assert (node_2.bytes_received, node_2.bytes_done) == (50 * MiB, 50 * MiB)
    # The second attempt starts from what the first received: no jump between them.
    assert node_2.samples[-2:] == [[round(again, 3), 30 * MiB], [round(again + 1, 3), 50 * MiB]]
    assert rates(node_2.samples)[-1] == pytest.approx(20 * MiB)

    services.targets_record(transfer=running, results={node_2.pk: {"status": "completed", "bytes_received": 70 * MiB}})
    node_2.refresh_from_db()
    assert node_2.bytes_received == 100 * MiB


def test_samples_are_spaced_and_bounded() -> None:
    samples: list[list[float]] = []
    for i in range(4000):
        add_sample(samples, 1000 + i * 0.25, i)
    assert len(samples) <= MAX_SAMPLES
    assert samples[0] == [1000, 0] and samples[-1] == [1000 + 3999 * 0.25, 3999]
    gaps = [b[0] - a[0] for a, b in zip(samples, samples[1:], strict=False)]
    assert min(gaps[:-1]) >= SAMPLE_SECONDS
    assert not add_sample(samples, 1000, 1)  # older than the last: ignored


def test_the_page_serves_the_samples_the_chart_draws(browser: Client, running: Transfer) -> None:
    node_2 = target(running, "node_2")
    start = time.time() - 5
    services.target_progress(transfer=running, rows={node_2.pk: row(10 * MiB, started=start, at=start + 1)})
    text = page(browser, running)
    data = text[text.index('id="transfer-data"') :]
    assert f'"{node_2.pk}": [[{round(start, 3)}, 0], [{round(start + 1, 3)}, {10 * MiB}]]' in data
    assert f'"sample_seconds": {SAMPLE_SECONDS}' in data
