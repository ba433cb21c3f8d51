"""Web pages about casts: dashboard, cast form, transfer detail, history.

Plain function views: they read rows and call services; they never call Ray. Live updates
come over the WebSockets of transfers/consumers.py.
"""

from __future__ import annotations

import os
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.uploadedfile import UploadedFile
from django.core.paginator import Paginator
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from castray_site.lib import iso
from clusters.models import Cluster
from dataplane.storage import Digester
from nodes.browse import DirEntry, castable_dirs
from nodes.file_services import check_room, file_generate, file_place, staging_path
from nodes.files import FileInfo, StorageError, list_files, local_root
from nodes.models import Node, NodeGroup
from transfers.models import Target, Transfer
from transfers.page_forms import PRESETS, CastForm
from transfers.samples import MAX_SAMPLES, SAMPLE_SECONDS, Sample
from transfers.selectors import status_snapshot
from transfers.services import CastError, transfer_cancel, transfer_create, transfer_retry
from transfers.templatetags.castray import size as filesize
from transfers.tree_layout import TreePicture, layout

HISTORY_PAGE_SIZE = 50
RECENT_SHOWN = 10


def _with_counts(transfers: QuerySet[Transfer]) -> QuerySet[Transfer]:
    return (
        transfers.select_related("source")
        .annotate(
            target_count=Count("targets"),
            done_count=Count("targets", filter=Q(targets__status__in=[Target.Status.COMPLETED, Target.Status.SKIPPED])),
            failed_count=Count("targets", filter=Q(targets__status=Target.Status.FAILED)),
        )
        .prefetch_related("targets")  # the rate column reads them (Transfer.rate)
    )


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    snapshot = status_snapshot()
    nodes = Node.objects.all()
    finished = _with_counts(Transfer.objects.filter(status__in=Transfer.FINAL))
    day_ago = timezone.now() - timedelta(days=1)
    counts = dict(
        Transfer.objects.filter(created_at__gte=day_ago).values_list("status").annotate(n=Count("id")).order_by()
    )
    return render(
        request,
        "castray/dashboard.html",
        {
            "snapshot": snapshot,
            "cluster": Cluster.objects.filter(active=True).first(),
            "nodes": nodes,
            "stats": {s["id"]: s for s in snapshot["node_statuses"]},
            "active": snapshot["active_casts"],
            "recent": finished.order_by("-finished_at", "-id")[:RECENT_SHOWN],
            "day_counts": counts,
        },
    )


# Where the file services name a field, the cast form's field that the person can fix.
_FILE_FIELDS = {
    "upload": {"name": "upload", "size": "upload", "upload": "upload", "node": "source"},
    "generate": {"file_name": "gen_name", "name": "gen_name", "size": "gen_size", "content_type": "gen_content"},
}


def _store_upload(node: Node, upload: UploadedFile, name: str, *, overwrite: bool) -> FileInfo:
    """Stage the uploaded file inside the node's storage, then give it its name (file_place)."""
    root = local_root(node)
    check_room(root, upload.size or 0, field="upload")
    staged = staging_path(root)
    digester = Digester(settings.CASTRAY_CHUNK_SIZE)
    try:
        with open(staged, "xb") as handle:
            for chunk in upload.chunks():
                handle.write(chunk)
                digester.update(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        return file_place(root=root, name=name, staged=staged, manifest=digester.manifest(), overwrite=overwrite)
    finally:
        staged.unlink(missing_ok=True)


def _file_for_cast(request: HttpRequest, form: CastForm) -> str:
    """Return the name of the file to cast, generating or storing it first if asked.

    Runs only once the whole form is valid (CastForm.clean checked the targets and the name).
    """
    data = form.cleaned_data
    source: Node = data["source"]
    how = data["file_source"]
    if how == "existing":
        return data["file_name"]
    if how == "url":
        return data["origin_name"]  # the source fetches it when the cast starts
    if how == "upload":
        return _store_upload(source, data["upload"], data["new_name"], overwrite=data["overwrite"]).name
    size, content = data["gen_size"], data["gen_content"]
    info = file_generate(node=source, name=data["new_name"], size=size, content=content, overwrite=data["overwrite"])
    messages.info(request, f"Generated {info.name} ({filesize(info.size)}) on {source.name}.")
    return info.name


def _castable(node: Node) -> tuple[list[DirEntry], list[FileInfo]]:
    """The directories and files the node may cast, when its storage is on this host."""
    try:
        root = local_root(node)
        return castable_dirs(root), [f for f in list_files(root) if not f.partial]
    except StorageError:
        return [], []  # storage on another host (or not created yet): upload, generate or fetch instead


@login_required
def cast(request: HttpRequest) -> HttpResponse:
    initial = {"source": request.GET.get("source", "")} if request.GET.get("source") else {}
    form = CastForm(request.POST or None, request.FILES or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            file_name = _file_for_cast(request, form)
            transfer = transfer_create(
                source=data["source"],
                file_name=file_name,
                **form.chosen_targets(),
                requested_by=request.user,
                mode=data["mode"],
                priority=data["priority"] or 0,
                fan_out=data["fan_out"] or 0,
                dest_name=data["dest_name"],
                origin=data["origin"] if data["file_source"] == "url" else "",
                mirror=data["mirror"],
            )
        except CastError as exc:
            field = exc.field if exc.field in form.fields else None
            if exc.field in ("broadcast",):
                field = "target_choice"
            form.add_error(field, exc.message)
        except StorageError as exc:
            form.add_error(_FILE_FIELDS.get(data["file_source"], {}).get(exc.field), exc.message)
        except OSError as exc:
            form.add_error(None, f"the file could not be written: {exc}")
        else:
            return redirect("transfer-detail", transfer_id=transfer.pk)
    sources = list(Node.objects.enabled())
    return render(
        request,
        "castray/cast.html",
        {
            "form": form,
            "sources": sources,
            "files": {node.name: _castable(node) for node in sources},
            "groups": NodeGroup.objects.annotate(members=Count("nodes")),
            "presets": PRESETS,
        },
    )


def _totals(transfer: Transfer, targets: list[Target]) -> dict[str, float | int | bool | None]:
    delivered = sum(t.bytes_done for t in targets if t.status in (Target.Status.COMPLETED, Target.Status.SKIPPED))
    duration = transfer.duration
    return {
        "delivered": delivered,
        # What crossed the network to the targets, whatever became of the cast: a cancelled
        # one shows what its targets had received when it stopped.
        "received": sum(t.bytes_received for t in targets),
        # "No bytes sent" is true of one cast only: every target already held the file.
        "all_skipped": bool(targets) and all(t.status == Target.Status.SKIPPED for t in targets),
        "duration": duration,
        "throughput": delivered / duration if duration else None,
        # The cast's time against the least its caps allow (Kumar-Ross); copies from the source
        # stay beside it as what they are.
        "vs_bound": transfer.vs_bound,
        "source_copies": transfer.source_bytes_sent / transfer.size if transfer.size else None,
    }


def _picture(transfer: Transfer, targets: list[Target]) -> TreePicture | None:
    return layout(transfer.tree or {}, {t.node.name: t.status for t in targets})


def _samples(target: Target) -> list[Sample]:
    """A target's rate-chart samples (transfers/samples.py).

    A target recorded before samples were kept has its start and its finish: the chart then
    draws its average over that time, by the same rule.
    """
    if target.samples:
        return target.samples
    if target.started_at and target.finished_at and target.bytes_received:
        return [[target.started_at.timestamp(), 0], [target.finished_at.timestamp(), target.bytes_received]]
    return []


@login_required
def transfer_detail(request: HttpRequest, transfer_id: int) -> HttpResponse:
    transfer = get_object_or_404(Transfer.objects.select_related("source", "group", "requested_by"), pk=transfer_id)
    targets = list(transfer.targets.select_related("node", "parent"))
    initial = {
        "id": transfer.pk,
        "status": transfer.status,
        "size": transfer.size,
        "started_at": iso(transfer.started_at),
        "finished_at": iso(transfer.finished_at),
        "duration": transfer.duration,
        "rate": transfer.rate,
        "files": transfer.files,  # a directory cast's, once the source answered
        "targets": [
            {
                "id": t.pk,
                "node": t.node.name,
                "status": t.status,
                "bytes_done": t.bytes_done,
                "files_done": t.files_done,
            }
            for t in targets
        ],
        "final": transfer.status in Transfer.FINAL,
        "tree": transfer.tree,
        # The rate chart's samples per target, and the rule the page adds live ones by.
        "samples": {t.pk: _samples(t) for t in targets},
        "sample_seconds": SAMPLE_SECONDS,
        "max_samples": MAX_SAMPLES,
    }
    return render(
        request,
        "castray/transfer_detail.html",
        {
            "transfer": transfer,
            "targets": targets,
            "totals": _totals(transfer, targets),
            "tree": _picture(transfer, targets),
            "initial": initial,
            "final": transfer.status in Transfer.FINAL,
        },
    )


@login_required
def transfer_tree(request: HttpRequest, transfer_id: int) -> HttpResponse:
    """The tree picture alone, for the transfer page to refresh once the worker planned it."""
    transfer = get_object_or_404(Transfer, pk=transfer_id)
    targets = list(transfer.targets.select_related("node"))
    return render(request, "castray/_tree.html", {"tree": _picture(transfer, targets), "transfer": transfer})


@login_required
@require_POST
def transfer_cancel_page(request: HttpRequest, transfer_id: int) -> HttpResponse:
    transfer = get_object_or_404(Transfer, pk=transfer_id)
    if transfer_cancel(transfer=transfer):
        messages.success(request, f"Cast #{transfer.pk} cancelled.")
    else:
        messages.warning(request, f"Cast #{transfer.pk} had already finished ({transfer.status}).")
    return redirect("transfer-detail", transfer_id=transfer.pk)


@login_required
@require_POST
def transfer_retry_page(request: HttpRequest, transfer_id: int) -> HttpResponse:
    transfer = get_object_or_404(Transfer.objects.select_related("source"), pk=transfer_id)
    try:
        again = transfer_retry(transfer=transfer, requested_by=request.user)
    except CastError as exc:
        messages.error(request, f"Cannot retry cast #{transfer.pk}: {exc.message}")
        return redirect("transfer-detail", transfer_id=transfer.pk)
    messages.success(request, f"Cast #{again.pk} repeats #{transfer.pk}.")
    return redirect("transfer-detail", transfer_id=again.pk)


@login_required
def history(request: HttpRequest) -> HttpResponse:
    transfers = _with_counts(Transfer.objects.all())
    params = request.GET
    if params.get("status") in Transfer.Status.values:
        transfers = transfers.filter(status=params["status"])
    if params.get("cast_type") in Transfer.Cast.values:
        transfers = transfers.filter(cast_type=params["cast_type"])
    if params.get("mode") in Transfer.Mode.values:
        transfers = transfers.filter(mode=params["mode"])
    if params.get("node"):
        transfers = transfers.filter(Q(source__name=params["node"]) | Q(targets__node__name=params["node"])).distinct()
    query = params.get("q", "").strip()
    if query:
        match = Q(file_name__icontains=query) | Q(error__icontains=query) | Q(sha256__istartswith=query)
        if query.lstrip("#").isdigit():
            match |= Q(pk=int(query.lstrip("#")))
        transfers = transfers.filter(match)
    page = Paginator(transfers.order_by("-created_at", "-id"), HISTORY_PAGE_SIZE).get_page(params.get("page"))
    kept = params.copy()
    kept.pop("page", None)
    return render(
        request,
        "castray/history.html",
        {
            "page": page,
            "statuses": Transfer.Status.values,
            "cast_types": Transfer.Cast.values,
            "modes": Transfer.Mode.values,
            "node_names": Node.objects.values_list("name", flat=True),
            "filters": params,
            "query_string": kept.urlencode(),
        },
    )
