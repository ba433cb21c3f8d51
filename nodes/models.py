from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

node_name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
    "Use 1-63 letters, digits, '_', '-' or '.', starting with a letter or digit.",
)


class NodeQuerySet(models.QuerySet["Node"]):
    def enabled(self) -> NodeQuerySet:
        return self.filter(enabled=True)

    def named(self, name: str) -> Node | None:
        """The node called `name`, or None, also for a name no node can have: a name from a URL
        may carry anything, and PostgreSQL refuses a query with a NUL in it."""
        if not node_name_validator.regex.fullmatch(name):
            return None
        return self.filter(name=name).first()

    def online(self) -> NodeQuerySet:
        return self.filter(enabled=True, status=Node.Status.ONLINE)


class Node(models.Model):
    """A CastRay node: one `CastNode` actor with its own storage, pinned to a Ray node."""

    class Status(models.TextChoices):
        STARTING = "starting"
        ONLINE = "online"
        OFFLINE = "offline"
        ERROR = "error"

    name = models.CharField(max_length=63, unique=True, validators=[node_name_validator])
    # Desired state, set by people.
    enabled = models.BooleanField(default=True)
    # Observed state, set by the worker from heartbeats.
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OFFLINE)
    status_detail = models.TextField(blank=True)
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    # Placement: the Ray node id to pin the actor to (empty: wherever Ray puts it).
    ray_node_id = models.CharField(max_length=64, blank=True)
    storage_dir = models.CharField(max_length=1024, blank=True, help_text="Empty: under the data directory.")
    address = models.CharField(max_length=255, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True)
    requested_port = models.PositiveIntegerField(null=True, blank=True)
    # Limits; empty means the configured default (CASTRAY_DEFAULT_*).
    egress_cap = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Bytes per second out; empty: default."
    )
    ingress_cap = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Bytes per second in; empty: default."
    )
    max_concurrent = models.PositiveIntegerField(
        null=True, blank=True, help_text="Casts this node takes part in at once; empty: default."
    )
    # What the planner learns from past casts: a node's configured caps say what it may do,
    # this says what it did (bytes/s of its last completed receive).
    achieved_rate = models.FloatField(null=True, blank=True, help_text="Bytes per second it last received at.")
    actor_pid = models.PositiveIntegerField(null=True, blank=True)
    peak_rss_mib = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = NodeQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def storage_root(self) -> Path:
        if self.storage_dir:
            return Path(self.storage_dir)
        return Path(settings.CASTRAY_STORAGE_DIR) / self.name

    @property
    def actor_name(self) -> str:
        return f"castnode:{self.name}"


class NodeGroup(models.Model):
    """A named set of nodes that a multicast can target."""

    name = models.CharField(max_length=63, unique=True, validators=[node_name_validator])
    description = models.CharField(max_length=255, blank=True)
    nodes = models.ManyToManyField(Node, related_name="groups", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
