"""Cluster endpoints: discovery and switching (the earlier CastRay's /api/cluster/* paths), Ray stats,
run-time configuration, demo mode and Prometheus metrics. Included at the site root."""

from __future__ import annotations

from django.urls import path

from clusters import external, file_requests, metrics, stats_views

urlpatterns = [
    path("api/cluster/discover-external", external.DiscoverView.as_view(), name="cluster-discover"),
    path("api/cluster/external-info", external.ExternalInfoView.as_view(), name="cluster-external-info"),
    path("api/cluster/connect-external", external.ConnectView.as_view(), name="cluster-connect"),
    path("api/cluster/disconnect-external", external.DisconnectView.as_view(), name="cluster-disconnect"),
    path("api/cluster/adopt-ray-nodes", external.AdoptView.as_view(), name="cluster-adopt"),
    path("api/cluster/operations", external.OperationListView.as_view(), name="cluster-operations"),
    path("api/cluster/operations/<int:pk>", external.OperationView.as_view(), name="cluster-operation"),
    path("api/cluster/file-requests", file_requests.FileRequestsView.as_view(), name="file-requests"),
    path("api/cluster/file-requests/<int:pk>", file_requests.FileRequestView.as_view(), name="file-request"),
    path(
        "api/cluster/file-requests/<int:pk>/download",
        file_requests.FileRequestDownloadView.as_view(),
        name="file-request-download",
    ),
    # Before the compatibility routes' api/nodes/<node_id>: "external" is not a node.
    path("api/nodes/external", external.ExternalNodesView.as_view(), name="nodes-external"),
    path("api/ray-dashboard", stats_views.RayDashboardView.as_view(), name="ray-dashboard"),
    path("api/demo", stats_views.DemoView.as_view(), name="demo"),
    path("ray/stats", stats_views.RayStatsView.as_view(), name="ray-stats"),
    path("ray/configure", stats_views.ConfigureView.as_view(), name="ray-configure"),
    path("metrics", metrics.metrics, name="metrics"),
]
