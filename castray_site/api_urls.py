"""The resource API under /api/v1/ (namespace `v1`, apart from the pages' URL names)."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import DefaultRouter

from castray_site.auth_views import ObtainToken
from clusters.views import ClusterViewSet
from nodes.file_views import GeneratorPresetsView, NodeFileGenerateView, NodeFilesView, NodeFileView
from nodes.views import NodeGroupViewSet, NodeViewSet
from transfers.views import MessageViewSet, TargetViewSet, TransferViewSet

app_name = "v1"

router = DefaultRouter()
# Node names may contain dots: no `.json` suffixes to confuse them with.
router.include_format_suffixes = False
router.register("clusters", ClusterViewSet)
router.register("nodes", NodeViewSet)
router.register("groups", NodeGroupViewSet)
router.register("transfers", TransferViewSet)
router.register("targets", TargetViewSet)
router.register("messages", MessageViewSet)

urlpatterns = [
    path("auth/token/", ObtainToken.as_view(), name="auth-token"),
    path("nodes/<str:name>/files/", NodeFilesView.as_view(), name="node-files"),
    path("nodes/<str:name>/files/<path:file_path>", NodeFileView.as_view(), name="node-file"),
    path("nodes/<str:name>/generate/", NodeFileGenerateView.as_view(), name="node-generate"),
    path("generator/presets/", GeneratorPresetsView.as_view(), name="generator-presets"),
    *router.urls,
]
