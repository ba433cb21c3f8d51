from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from castray_site import health
from clusters.views import ClusterViewSet
from nodes.views import NodeViewSet
from transfers.views import TransferViewSet

router = DefaultRouter()
router.register("clusters", ClusterViewSet)
router.register("nodes", NodeViewSet)
router.register("transfers", TransferViewSet)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api-auth/", include("rest_framework.urls")),
    path("health", health.health, name="health"),
    path("", include("clusters.urls")),
    path("", include("castray_site.page_urls")),
]
