"""Cluster endpoints: discovery and switching (the earlier CastRay's /api/cluster/* paths), Ray stats."""

from __future__ import annotations

urlpatterns: list = []
