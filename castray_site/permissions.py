"""Who may do what through the API, in one place for every app.

Signed-in users read and cast; staff change nodes, clusters and configuration. Status reads
may be opened to anyone on a trusted network with CASTRAY_ANONYMOUS_STATUS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from rest_framework import permissions
from rest_framework.request import Request

if TYPE_CHECKING:
    from rest_framework.views import APIView


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


class ApiDocsReader(permissions.BasePermission):
    """Authenticated users; anyone when CASTRAY_PUBLIC_API_DOCS opens the schema and docs on purpose."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if settings.CASTRAY_PUBLIC_API_DOCS:
            return True
        return bool(request.user and request.user.is_authenticated)


class StaffWritesOrReadOnly(permissions.BasePermission):
    """Authenticated users read; only staff create or change."""

    message = "only staff may change this; ask an operator"

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in permissions.SAFE_METHODS or request.user.is_staff


class StaffWritesStatusReads(permissions.BasePermission):
    """Status readers read (see `StatusReader`); only staff change."""

    message = IsStaff.message

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return StatusReader().has_permission(request, view)
        return IsStaff().has_permission(request, view)


class ReadOrStaffDeletes(permissions.BasePermission):
    """Authenticated users read; only staff delete."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.method == "DELETE":
            return IsStaff().has_permission(request, view)
        return permissions.IsAuthenticated().has_permission(request, view)
