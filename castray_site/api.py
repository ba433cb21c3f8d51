"""Pieces every API view shares: throttling, pagination, content negotiation (permissions: permissions.py)."""

from __future__ import annotations

from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


# DRF's throttles read their rates once, when the class is defined; these read them per request,
# so a changed setting (tests, a reloaded configuration) takes effect.
class UserThrottle(UserRateThrottle):
    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class AnonThrottle(AnonRateThrottle):
    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class Pagination(LimitOffsetPagination):
    # A client asking for a million rows gets a bounded page, not a slow response.
    max_limit = 500


class AnyAcceptNegotiation(DefaultContentNegotiation):
    """For downloads: a client that accepts only the file's type still gets the file (or a JSON error)."""

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, Any]:
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except Exception:  # noqa: BLE001 - NotAcceptable: fall back to JSON for errors
            return renderers[0], renderers[0].media_type
