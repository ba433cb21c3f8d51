"""The cluster page: what the worker last saw of Ray, and every cluster record."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from clusters.models import Cluster
from nodes.models import Node


@login_required
def cluster_page(request: HttpRequest) -> HttpResponse:
    clusters = list(Cluster.objects.all())
    active = next((c for c in clusters if c.active), None)
    resources = sorted((active.resources or {}).items()) if active else []
    placed: dict[str, list[str]] = {}
    for ray_node_id, name in Node.objects.exclude(ray_node_id="").values_list("ray_node_id", "name"):
        placed.setdefault(ray_node_id, []).append(name)
    ray_nodes = [
        {**n, "castray_nodes": ", ".join(placed.get(n.get("node_id") or "", []))}
        for n in (active.ray_nodes if active else [])
    ]
    return render(
        request,
        "castray/clusters.html",
        {"active": active, "clusters": clusters, "resources": resources, "ray_nodes": ray_nodes},
    )
