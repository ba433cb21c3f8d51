"""The earlier CastRay's paths, exactly (no trailing slash), for the clients written against them."""

from __future__ import annotations

from django.urls import path

from castray_site.compat import casts, clusters, generator, nodes, status

urlpatterns = [
    path("health", status.HealthView.as_view(), name="health"),
    path("api/status", status.StatusView.as_view(), name="compat-status"),
    path("api/file-transfers/status", status.FileTransfersStatusView.as_view(), name="compat-transfers-status"),
    path("api/nodes", nodes.NodesView.as_view(), name="compat-nodes"),
    # Before api/nodes/<node_id>: "external" is not a node.
    path("api/nodes/external", clusters.ExternalNodesView.as_view(), name="nodes-external"),
    path("api/nodes/<str:node_id>", nodes.NodeView.as_view(), name="compat-node"),
    path("api/nodes/<str:node_id>/messages", nodes.NodeMessagesView.as_view(), name="compat-node-messages"),
    path("api/file-transfers/auto/toggle", nodes.AutoToggleView.as_view(), name="compat-auto-toggle"),
    path("api/send", casts.SendView.as_view(), name="compat-send"),
    path("api/file-transfers/manual", casts.ManualTransferView.as_view(), name="compat-transfers-manual"),
    path("api/file-generator/presets", generator.PresetsView.as_view(), name="compat-presets"),
    path("api/file-generator/create", generator.GenerateView.as_view(), name="compat-generate"),
    path(
        "api/file-generator/create-and-transfer",
        generator.GenerateAndTransferView.as_view(),
        name="compat-generate-and-transfer",
    ),
    path("api/cluster/discover-external", clusters.DiscoverView.as_view(), name="cluster-discover"),
    path("api/cluster/external-info", clusters.ExternalInfoView.as_view(), name="cluster-external-info"),
    path("api/cluster/connect-external", clusters.ConnectView.as_view(), name="cluster-connect"),
    path("api/cluster/disconnect-external", clusters.DisconnectView.as_view(), name="cluster-disconnect"),
    path("api/ray-dashboard", clusters.RayDashboardView.as_view(), name="ray-dashboard"),
]
