from __future__ import annotations

from django.db import models


class Cluster(models.Model):
    """A Ray cluster CastRay connects to, and what the worker last saw of it."""

    class Status(models.TextChoices):
        CONNECTING = "connecting"
        CONNECTED = "connected"
        DEGRADED = "degraded"
        DISCONNECTED = "disconnected"

    name = models.SlugField(max_length=64, unique=True, default="default")
    # Empty means "start a local Ray on demand".
    address = models.CharField(max_length=255, blank=True)
    active = models.BooleanField(default=True, help_text="The cluster the worker uses now.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DISCONNECTED)
    last_error = models.TextField(blank=True)
    ray_version = models.CharField(max_length=32, blank=True)
    gcs_address = models.CharField(max_length=255, blank=True)
    dashboard_url = models.CharField(max_length=255, blank=True)
    resources = models.JSONField(default=dict, blank=True)
    ray_nodes = models.JSONField(default=list, blank=True)
    worker_id = models.CharField(max_length=64, blank=True)
    worker_seen = models.DateTimeField(null=True, blank=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"
