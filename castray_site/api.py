"""Pieces every API view shares: who may do what, throttling, pagination, content negotiation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from rest_framework import permissions
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

if TYPE_CHECKING:
    # Only for types: DRF imports this module (throttles, pagination) while defining APIView.
    from rest_framework.views import APIView


class StaffWritesOrReadOnly(permissions.BasePermission):
    """Authenticated users read; only staff create or change."""

    message = "only staff may change this; ask an operator"

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in permissions.SAFE_METHODS or request.user.is_staff


class IsStaff(permissions.BasePermission):
    message = "only staff may do this; ask an operator"

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class StatusReader(permissions.BasePermission):
    """Authenticated users; anyone when CASTRAY_ANONYMOUS_STATUS opens status on a trusted network."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if settings.CASTRAY_ANONYMOUS_STATUS and request.method in permissions.SAFE_METHODS:
            return True
        return bool(request.user and request.user.is_authenticated)


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
