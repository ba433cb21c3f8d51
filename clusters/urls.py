"""Cluster endpoints: switch operations, adoption, remote file requests, Ray stats, run-time
configuration, demo mode and Prometheus metrics. Included at the site root.

The earlier CastRay's cluster paths (/api/cluster/*-external, /api/nodes/external,
/api/ray-dashboard) are in castray_site/compat/urls.py."""

from __future__ import annotations

from django.urls import path

from clusters import file_requests, metrics, stats_views, views

urlpatterns = [
    path("api/cluster/adopt-ray-nodes", views.AdoptView.as_view(), name="cluster-adopt"),
    path("api/cluster/operations", views.OperationListView.as_view(), name="cluster-operations"),
    path("api/cluster/operations/<int:pk>", views.OperationView.as_view(), name="cluster-operation"),
    path("api/cluster/file-requests", file_requests.FileRequestsView.as_view(), name="file-requests"),
    path("api/cluster/file-requests/<int:pk>", file_requests.FileRequestView.as_view(), name="file-request"),
    path(
        "api/cluster/file-requests/<int:pk>/download",
        file_requests.FileRequestDownloadView.as_view(),
        name="file-request-download",
    ),
    path("api/demo", stats_views.DemoView.as_view(), name="demo"),
    path("ray/stats", stats_views.RayStatsView.as_view(), name="ray-stats"),
    path("ray/configure", stats_views.ConfigureView.as_view(), name="ray-configure"),
    path("metrics", metrics.metrics, name="metrics"),
]
