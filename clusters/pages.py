"""The cluster page: what the worker last saw of Ray, and every cluster record."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from clusters.models import Cluster
from clusters.selectors import nodes_by_ray_node


@login_required
def cluster_page(request: HttpRequest) -> HttpResponse:
    clusters = list(Cluster.objects.all())
    active = next((c for c in clusters if c.active), None)
    resources = sorted((active.resources or {}).items()) if active else []
    placed = nodes_by_ray_node()
    ray_nodes = [
        {**n, "castray_nodes": ", ".join(placed.get(n.get("node_id") or "", []))}
        for n in (active.ray_nodes if active else [])
    ]
    return render(
        request,
        "castray/clusters.html",
        {"active": active, "clusters": clusters, "resources": resources, "ray_nodes": ray_nodes},
    )
