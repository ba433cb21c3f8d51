"""Web pages about nodes: the list with live status and counters, and one node's files and casts."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from nodes.files import StorageError, list_files, local_root
from nodes.models import Node
from transfers.models import Delivery, Transfer
from transfers.selectors import status_snapshot

RECENT_SHOWN = 20


@login_required
def node_list(request: HttpRequest) -> HttpResponse:
    stats = {s["id"]: s for s in status_snapshot()["node_statuses"]}
    nodes = Node.objects.prefetch_related("groups")
    return render(request, "castray/nodes.html", {"rows": [(node, stats.get(node.pk, {})) for node in nodes]})


@login_required
def node_detail(request: HttpRequest, name: str) -> HttpResponse:
    node = get_object_or_404(Node.objects.prefetch_related("groups"), name=name)
    stats = next((s for s in status_snapshot()["node_statuses"] if s["id"] == node.pk), {})
    transfers = (
        Transfer.objects.filter(Q(source=node) | Q(targets__node=node))
        .select_related("source")
        .distinct()
        .order_by("-created_at", "-id")[:RECENT_SHOWN]
    )
    inbox = (
        Delivery.objects.filter(node=node)
        .select_related("message", "message__sender")
        .order_by("-message__created_at", "-id")[:RECENT_SHOWN]
    )
    try:
        files, files_problem = list_files(local_root(node)), ""
    except StorageError as exc:
        files, files_problem = [], exc.message
    return render(
        request,
        "castray/node_detail.html",
        {
            "node": node,
            "stats": stats,
            "files": files,
            "files_problem": files_problem,
            "transfers": transfers,
            "inbox": inbox,
        },
    )
