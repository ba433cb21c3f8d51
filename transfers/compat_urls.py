"""The earlier CastRay's paths, exactly (no trailing slash), for the clients written against them."""

from __future__ import annotations

from django.urls import path

from transfers import compat

urlpatterns = [
    path("health", compat.HealthView.as_view(), name="health"),
    path("api/status", compat.StatusView.as_view(), name="compat-status"),
    path("api/nodes", compat.NodesView.as_view(), name="compat-nodes"),
    path("api/nodes/<str:node_id>", compat.NodeView.as_view(), name="compat-node"),
    path("api/nodes/<str:node_id>/messages", compat.NodeMessagesView.as_view(), name="compat-node-messages"),
    path("api/send", compat.SendView.as_view(), name="compat-send"),
    path("api/file-transfers/status", compat.FileTransfersStatusView.as_view(), name="compat-transfers-status"),
    path("api/file-transfers/manual", compat.ManualTransferView.as_view(), name="compat-transfers-manual"),
    path("api/file-transfers/auto/toggle", compat.AutoToggleView.as_view(), name="compat-auto-toggle"),
    path("api/file-generator/presets", compat.PresetsView.as_view(), name="compat-presets"),
    path("api/file-generator/create", compat.GenerateView.as_view(), name="compat-generate"),
    path(
        "api/file-generator/create-and-transfer",
        compat.GenerateAndTransferView.as_view(),
        name="compat-generate-and-transfer",
    ),
]
