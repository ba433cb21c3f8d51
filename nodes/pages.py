"""Web pages about nodes: the list with live status and counters, and one node's files and casts."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from dataplane.storage import UnsafePath
from nodes.browse import DirEntry, list_dir
from nodes.files import StorageError, local_root
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
    directory = request.GET.get("dir", "")
    if len(directory) > 1 and directory.endswith("/"):
        directory = directory[:-1]  # "ckpt/" is ckpt; "/" stays, and is refused as absolute
    entries, files_problem = _browse(node, directory)
    return render(
        request,
        "castray/node_detail.html",
        {
            "node": node,
            "stats": stats,
            "entries": entries,
            "files_problem": files_problem,
            "directory": directory,
            "crumbs": _crumbs(directory),
            "transfers": transfers,
            "inbox": inbox,
        },
    )


def _browse(node: Node, directory: str) -> tuple[list[DirEntry], str]:
    """What `directory` of the node's storage holds, or why it cannot be shown."""
    try:
        return list_dir(local_root(node), directory), ""
    except StorageError as exc:
        return [], exc.message
    except (UnsafePath, OSError) as exc:
        return [], str(exc)


def _crumbs(directory: str) -> list[tuple[str, str]]:
    """(name, path) of each directory on the way to `directory`, for links back up."""
    parts = directory.split("/") if directory else []
    return [(part, "/".join(parts[: i + 1])) for i, part in enumerate(parts)]
