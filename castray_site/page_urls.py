"""Web pages for people (dashboard, cast, transfers, nodes, clusters)."""

from __future__ import annotations

urlpatterns: list = []
