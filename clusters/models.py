from __future__ import annotations

from django.conf import settings
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
    available_resources = models.JSONField(default=dict, blank=True)
    ray_nodes = models.JSONField(default=list, blank=True)
    # Actors, object store use and per-node resources, collected by the worker every few seconds.
    stats = models.JSONField(default=dict, blank=True)
    # Made by connect-external (not the configured cluster); CastRay never stops it.
    external = models.BooleanField(default=False)
    worker_id = models.CharField(max_length=64, blank=True)
    worker_seen = models.DateTimeField(null=True, blank=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"


class ClusterOperation(models.Model):
    """A request to move CastRay onto another Ray cluster, and what came of it.

    Views record the intent; the worker carries it out and writes the result, so a
    request never waits on Ray.
    """

    class Kind(models.TextChoices):
        CONNECT = "connect"
        DISCONNECT = "disconnect"

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    FINAL = (Status.SUCCEEDED, Status.FAILED)

    kind = models.CharField(max_length=16, choices=Kind.choices)
    address = models.CharField(max_length=255, blank=True, help_text="Where to go; empty: the configured cluster.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    message = models.TextField(blank=True, help_text="The result, in words.")
    source = models.ForeignKey(Cluster, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    target = models.ForeignKey(Cluster, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    worker_id = models.CharField(max_length=64, blank=True)
    requeued = models.JSONField(default=list, blank=True, help_text="Casts sent back to the queue by the switch.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.address or 'configured cluster'} ({self.status})"


class DiscoveredCluster(models.Model):
    """A Ray cluster found running on this host (from Ray's session files and ports)."""

    address = models.CharField(max_length=255, unique=True, help_text="GCS address, host:port.")
    session_name = models.CharField(max_length=128, blank=True)
    temp_dir = models.CharField(max_length=1024, blank=True)
    head_node_id = models.CharField(max_length=64, blank=True)
    sources = models.JSONField(default=list, blank=True, help_text="Where it was found.")
    alive = models.BooleanField(default=False, help_text="Its GCS port answered at the last discovery.")
    dashboard_url = models.CharField(max_length=255, blank=True)
    started_by_pid = models.PositiveIntegerField(null=True, blank=True)
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    last_checked = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_seen", "address"]

    def __str__(self) -> str:
        return f"{self.address} ({'alive' if self.alive else 'gone'})"


class NodePlacement(models.Model):
    """Where a CastRay node runs on one Ray cluster: kept so that a switch back restores it.

    `key` names the machine rather than the raylet (its `castray.io/node` label, or its
    host name), so a node whose raylet restarts with a new Ray node id is pinned again to
    the same machine.
    """

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="placements")
    node = models.ForeignKey("nodes.Node", on_delete=models.CASCADE, related_name="placements")
    ray_node_id = models.CharField(max_length=64, blank=True)
    key = models.CharField(max_length=255, blank=True)
    adopted = models.BooleanField(default=False, help_text="Created for this Ray node; never moved elsewhere.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["cluster_id", "node_id"]
        constraints = [models.UniqueConstraint(fields=["cluster", "node"], name="one_placement_per_cluster")]

    def __str__(self) -> str:
        return f"{self.node_id} on {self.ray_node_id[:8] or 'anywhere'} ({self.key})"


class RuntimeConfig(models.Model):
    """Settings operators change at run time (POST /ray/configure, the admin); the worker reads them.

    Empty fields fall back to the CASTRAY_* settings. There is one row (pk=1).
    """

    chunk_size = models.PositiveIntegerField(null=True, blank=True, help_text="Bytes per chunk.")
    default_fan_out = models.PositiveIntegerField(null=True, blank=True)
    default_egress_cap = models.PositiveBigIntegerField(null=True, blank=True, help_text="Bytes/s; 0: unlimited.")
    default_ingress_cap = models.PositiveBigIntegerField(null=True, blank=True, help_text="Bytes/s; 0: unlimited.")
    node_concurrency = models.PositiveIntegerField(null=True, blank=True, help_text="Casts per node at once.")
    max_active_transfers = models.PositiveIntegerField(null=True, blank=True, help_text="Casts per worker at once.")
    demo_enabled = models.BooleanField(null=True, blank=True, help_text="Demo casts; empty: CASTRAY_DEMO_MODE.")
    demo_interval = models.FloatField(null=True, blank=True, help_text="Seconds between demo casts.")
    demo_file_size = models.PositiveBigIntegerField(null=True, blank=True, help_text="Bytes per demo file.")
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "runtime configuration"
        verbose_name_plural = "runtime configuration"

    def __str__(self) -> str:
        return "runtime configuration"


class NodeFileRequest(models.Model):
    """A file operation on a node whose storage may be on another host, served by the worker.

    The web server cannot reach another host's disk and never calls Ray, so it records the
    request; a worker carries it out through the node's actor (list, delete) or a Ray task
    pinned to the node's Ray node (fetch: the bytes are copied into the worker's spool
    directory, from which the web server streams them).
    """

    class Op(models.TextChoices):
        LIST = "list"
        FETCH = "fetch"
        DELETE = "delete"

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        EXPIRED = "expired"

    FINAL = (Status.DONE, Status.FAILED, Status.EXPIRED)

    node = models.ForeignKey("nodes.Node", on_delete=models.CASCADE, related_name="file_requests")
    op = models.CharField(max_length=8, choices=Op.choices)
    name = models.CharField(max_length=1024, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    spool_path = models.CharField(max_length=1024, blank=True)
    worker_id = models.CharField(max_length=64, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"{self.op} {self.name or '*'} on {self.node_id} ({self.status})"
