"""Who may use the cluster endpoints: staff change things; signed-in users (or anyone, on a
trusted network with CASTRAY_ANONYMOUS_STATUS) read them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import permissions
from rest_framework.request import Request


class IsStaff(permissions.BasePermission):
    message = "only staff may do this; ask an operator"

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class StatusReader(permissions.BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        if getattr(settings, "CASTRAY_ANONYMOUS_STATUS", False) and request.method in permissions.SAFE_METHODS:
            return True
        return bool(request.user and request.user.is_authenticated)


class StaffWritesStatusReads(permissions.BasePermission):
    message = IsStaff.message

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return StatusReader().has_permission(request, view)
        return IsStaff().has_permission(request, view)
