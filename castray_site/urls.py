from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.models import Group
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from castray_site.api_docs import DocsView, RedocView, SchemaView

admin.site.site_header = "CastRay"
admin.site.site_title = "CastRay admin"
admin.site.index_title = "Casts, nodes and clusters"
# CastRay grants by is_staff alone; Django's permission groups do nothing here and, listed beside
# node groups, only confuse.
admin.site.unregister(Group)

urlpatterns = [
    # Browsers ask for /favicon.ico on pages without an icon link (the admin, the API docs).
    path("favicon.ico", RedirectView.as_view(url=static("castray/favicon.svg"), permanent=True)),
    path("admin/", admin.site.urls),
    path("api/v1/", include("castray_site.api_urls", namespace="v1")),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", DocsView.as_view(url_name="schema"), name="docs"),
    # ReDoc without its Google Fonts links (templates/castray/redoc.html).
    path("api/redoc/", RedocView.as_view(url_name="schema", template_name="castray/redoc.html"), name="redoc"),
    path("api-auth/", include("rest_framework.urls")),
    path("", include("clusters.urls")),
    # The earlier CastRay's paths, including /health and the old cluster endpoints (COMPAT.md).
    path("", include("castray_site.compat.urls")),
    path("", include("castray_site.page_urls")),
]

# JSON, not HTML, for API paths that fail outside DRF's views.
handler400 = "castray_site.api_errors.bad_request"
handler404 = "castray_site.api_errors.not_found"
handler500 = "castray_site.api_errors.server_error"
