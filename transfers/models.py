from __future__ import annotations

from django.conf import settings
from django.db import models

from nodes.models import Node


def over_bound(seconds: float | None, bound: float | None) -> float | None:
    """A time over its lower bound, when both are known."""
    return seconds / bound if seconds and bound else None


class TransferQuerySet(models.QuerySet["Transfer"]):
    def active(self) -> TransferQuerySet:
        return self.filter(status__in=[Transfer.Status.QUEUED, Transfer.Status.RUNNING])

    def queued(self) -> TransferQuerySet:
        return self.filter(status=Transfer.Status.QUEUED).order_by("-priority", "created_at", "id")


class Transfer(models.Model):
    """One cast of one file from a source node to one or more target nodes."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        COMPLETED = "completed"
        PARTIAL = "partial"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Mode(models.TextChoices):
        TCP = "tcp"
        UDP = "udp"
        OBJECT_STORE = "object_store"

    class Cast(models.TextChoices):
        UNICAST = "unicast"
        MULTICAST = "multicast"
        BROADCAST = "broadcast"

    FINAL = (Status.COMPLETED, Status.PARTIAL, Status.FAILED, Status.CANCELLED)

    source = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="sent_transfers")
    file_name = models.CharField(max_length=1024)
    origin = models.CharField(
        max_length=4096,
        blank=True,
        help_text="The URL the source fetches file_name from first; recorded without credentials.",
    )
    size = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.TCP)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    cast_type = models.CharField(max_length=16, choices=Cast.choices, default=Cast.UNICAST)
    group = models.ForeignKey(
        "nodes.NodeGroup", null=True, blank=True, on_delete=models.SET_NULL, related_name="transfers"
    )
    fan_out = models.PositiveIntegerField(default=0, help_text="Children per relay; 0: the configured default.")
    dest_name = models.CharField(max_length=1024, blank=True, help_text="Name at the targets; empty: file_name.")
    is_directory = models.BooleanField(default=False, help_text="file_name is a directory, cast as one version.")
    files = models.PositiveIntegerField(null=True, blank=True, help_text="A directory's regular files.")
    mirror = models.BooleanField(
        default=False, help_text="A directory: targets drop files the source does not have (like rsync --delete)."
    )
    priority = models.IntegerField(default=0)
    chunk_size = models.PositiveIntegerField(default=0, help_text="0: the configured default.")
    tree = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="transfers"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    source_bytes_sent = models.BigIntegerField(default=0)
    # The least time the cast could take with its nodes' caps (the Kumar-Ross bound); empty
    # when a cap is unknown. Its duration is shown against this.
    bound_seconds = models.FloatField(null=True, blank=True, help_text="Lower bound on the cast's time.")
    relay_bytes_sent = models.BigIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    # Claim and lease: the worker that runs the cast renews this; an expired lease means
    # the worker died and the cast may be recovered exactly once.
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_expires = models.DateTimeField(null=True, blank=True)

    objects = TransferQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "-priority", "created_at"]),
            models.Index(fields=["-created_at", "-id"]),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.file_name} from {self.source_id} ({self.status})"

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    @property
    def vs_bound(self) -> float | None:
        """The cast's time over its lower bound (Kumar-Ross): 1.0 is as fast as the caps allow."""
        return over_bound(self.duration, self.bound_seconds)

    @property
    def rate(self) -> float | None:
        """Bytes per second at which the file reached the targets that received it.

        What those targets received on average over the time from the cast's start to the
        last one's finish. None unless the cast delivered the file (completed or partial, with
        at least one target that received it): a cancelled or failed cast delivered no copy,
        and targets that were skipped received nothing, so the file's size over the cast's
        duration would be a rate nothing ran at. Reads the targets (prefetch them for lists).
        """
        if self.status not in (self.Status.COMPLETED, self.Status.PARTIAL) or not self.started_at:
            return None
        received = [t for t in self.targets.all() if t.status == Target.Status.COMPLETED]
        if not received:
            return None
        # Targets recorded before bytes_received was reported count as the whole file.
        per_target = sum(t.bytes_received or self.size or 0 for t in received) / len(received)
        end = max((t.finished_at or self.finished_at or self.started_at) for t in received)
        seconds = (end - self.started_at).total_seconds()
        return per_target / seconds if seconds > 0 else None


class Target(models.Model):
    """One recipient of a transfer, with what happened there."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RECEIVING = "receiving"
        VERIFYING = "verifying"
        COMPLETED = "completed"
        SKIPPED = "skipped"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINAL = (Status.COMPLETED, Status.SKIPPED, Status.FAILED, Status.CANCELLED)

    transfer = models.ForeignKey(Transfer, on_delete=models.CASCADE, related_name="targets")
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="targets")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    bytes_done = models.BigIntegerField(default=0)
    bytes_received = models.BigIntegerField(default=0, help_text="Bytes that crossed the network to this target.")
    # Progress reports count the bytes of the attempt under way: bytes_received is this plus
    # that, and becomes this once the attempt's result is recorded.
    received_before = models.BigIntegerField(
        default=0, help_text="Bytes received by the attempts whose result was recorded."
    )
    samples = models.JSONField(
        default=list, blank=True, help_text="[unix seconds, bytes received] pairs: the rate chart's (samples.py)."
    )
    rate = models.FloatField(null=True, blank=True, help_text="Bytes per second.")
    parent = models.ForeignKey(Node, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # Directory casts: files verified or already held, and those not sent because they were held.
    files_done = models.PositiveIntegerField(default=0)
    files_skipped = models.PositiveIntegerField(default=0)
    bytes_skipped = models.BigIntegerField(default=0)
    bound_seconds = models.FloatField(
        null=True, blank=True, help_text="Lower bound on its time: size / min(its ingress, the source's egress)."
    )

    @property
    def duration(self) -> float | None:
        """Seconds from the cast's start to this target's own finish."""
        done = self.started_at and self.finished_at
        return (self.finished_at - self.started_at).total_seconds() if done else None  # type: ignore[operator]

    @property
    def vs_bound(self) -> float | None:
        """Its time over its own lower bound: 1.0 is as fast as its caps allow."""
        return over_bound(self.duration, self.bound_seconds)

    class Meta:
        ordering = ["transfer_id", "node__name"]
        constraints = [models.UniqueConstraint(fields=["transfer", "node"], name="one_target_per_node")]

    def __str__(self) -> str:
        return f"{self.node_id} of #{self.transfer_id} ({self.status})"


class TransferFile(models.Model):
    """One regular file of a directory cast's manifest, as the source reported it at the start.

    Per target only counts are recorded (Target.files_done, files_skipped): which file a
    target held already, or which one failed, is not known here.
    """

    transfer = models.ForeignKey(Transfer, on_delete=models.CASCADE, related_name="manifest_files")
    path = models.CharField(max_length=4096, help_text="Relative to the directory, '/'-separated.")
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)

    class Meta:
        ordering = ["transfer_id", "path", "id"]

    def __str__(self) -> str:
        return f"{self.path} of #{self.transfer_id}"


class Message(models.Model):
    """A short text or JSON message cast to one node, a group or every online node."""

    class Kind(models.TextChoices):
        TEXT = "text"
        JSON = "json"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        COMPLETED = "completed"
        PARTIAL = "partial"
        FAILED = "failed"

    sender = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="sent_messages")
    cast_type = models.CharField(max_length=16, choices=Transfer.Cast.choices, default=Transfer.Cast.UNICAST)
    group = models.ForeignKey(
        "nodes.NodeGroup", null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.TEXT)
    content = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_expires = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"message #{self.pk} from {self.sender_id} ({self.status})"


class Delivery(models.Model):
    """One recipient of a message."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="deliveries")
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    delivered_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["message_id", "node_id"]
        constraints = [models.UniqueConstraint(fields=["message", "node"], name="one_delivery_per_node")]


class NodeCounters(models.Model):
    """A node's lifetime counters for `/api/status`, kept by the services as rows change.

    Summing them over the history on every request made the status cost grow with every
    cast ever made (transfers/services/counters.py keeps them; migration 0009 filled them in).
    """

    node = models.OneToOneField(Node, on_delete=models.CASCADE, primary_key=True, related_name="counters")
    # Casts it sent that ended plus its receipts that ended, and of those the good and the failed.
    total_transfers = models.BigIntegerField(default=0)
    successful_transfers = models.BigIntegerField(default=0)
    failed_transfers = models.BigIntegerField(default=0)
    # Bytes it sent as a source plus bytes it received, finished or not.
    bytes_transferred = models.BigIntegerField(default=0)
    messages_sent = models.BigIntegerField(default=0)
    messages_received = models.BigIntegerField(default=0)

    class Meta:
        verbose_name_plural = "node counters"

    def __str__(self) -> str:
        return f"counters of {self.node_id}"
