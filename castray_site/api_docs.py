"""The OpenAPI schema and its interactive docs, for signed-in users unless opened on purpose.

The schema lists every operation, parameter and field: a map of the API that anonymous clients
do not need. CASTRAY_PUBLIC_API_DOCS=1 serves the schema and both docs pages (Swagger UI, ReDoc)
to anyone (e.g. a public API's docs).
"""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.http.response import HttpResponseBase
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated

from castray_site.permissions import ApiDocsReader


class SchemaView(SpectacularAPIView):
    permission_classes = [ApiDocsReader]


class _DocsPage:
    """The docs are pages: a browser without a login goes to the login page and comes back."""

    permission_classes = [ApiDocsReader]

    def handle_exception(self, exc: Exception) -> HttpResponseBase:
        if isinstance(exc, NotAuthenticated | AuthenticationFailed):
            return redirect_to_login(self.request.get_full_path())  # type: ignore[attr-defined]
        return super().handle_exception(exc)  # type: ignore[misc]


class DocsView(_DocsPage, SpectacularSwaggerView):
    pass


class RedocView(_DocsPage, SpectacularRedocView):
    pass
