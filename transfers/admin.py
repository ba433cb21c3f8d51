"""Admin for operators: casts with their targets, messages with their deliveries.

Casts and messages are created through the cast page and the API (which check them); here
operators watch, cancel, retry and reprioritise. What the worker records is read-only.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from transfers.models import Delivery, Message, Target, Transfer
from transfers.services import CastError, transfer_cancel, transfer_retry
from transfers.templatetags.castray import rate, seconds, size


class TargetInline(admin.TabularInline):
    model = Target
    fk_name = "transfer"
    extra = 0
    can_delete = False
    fields = [
        "node",
        "status",
        "bytes_done",
        "bytes_received",
        "rate",
        "parent",
        "started_at",
        "finished_at",
        "attempts",
        "error",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Transfer)
class TransferAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "file_name",
        "source",
        "cast_type",
        "mode",
        "status",
        "targets_done",
        "human_size",
        "human_rate",
        "priority",
        "created_at",
        "requested_by",
    ]
    list_filter = ["status", "cast_type", "mode", "source", "created_at"]
    search_fields = ["=id", "file_name", "sha256", "error", "source__name", "targets__node__name"]
    list_select_related = ["source", "requested_by"]
    date_hierarchy = "created_at"
    inlines = [TargetInline]
    # Only the priority may change after a cast is queued; the rest is the request and the record.
    readonly_fields = [
        "page_link",
        "source",
        "file_name",
        "dest_name",
        "mode",
        "cast_type",
        "group",
        "fan_out",
        "status",
        "size",
        "sha256",
        "chunk_size",
        "tree",
        "error",
        "requested_by",
        "created_at",
        "started_at",
        "finished_at",
        "source_bytes_sent",
        "relay_bytes_sent",
        "attempts",
        "lease_owner",
        "lease_expires",
    ]
    fieldsets = [
        ("Request", {"fields": ["page_link", "source", "file_name", "dest_name", "mode", "cast_type", "group"]}),
        ("Scheduling", {"fields": ["priority", "fan_out", "lease_owner", "lease_expires", "attempts"]}),
        (
            "Record",
            {
                "fields": [
                    "status",
                    "error",
                    "size",
                    "sha256",
                    "chunk_size",
                    "source_bytes_sent",
                    "relay_bytes_sent",
                    "requested_by",
                    "created_at",
                    "started_at",
                    "finished_at",
                    "tree",
                ]
            },
        ),
    ]
    actions = ["cancel_transfers", "retry_transfers"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # casts are checked by transfer_create: use the cast page or the API

    def get_queryset(self, request: HttpRequest) -> QuerySet[Transfer]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                target_count=Count("targets", distinct=True),
                done_count=Count(
                    "targets",
                    filter=Q(targets__status__in=[Target.Status.COMPLETED, Target.Status.SKIPPED]),
                    distinct=True,
                ),
            )
            .prefetch_related("targets")  # the rate column reads them (Transfer.rate)
        )

    @admin.display(description="targets done")
    def targets_done(self, transfer: Transfer) -> str:
        return f"{transfer.done_count}/{transfer.target_count}"  # type: ignore[attr-defined]

    @admin.display(description="size", ordering="size")
    def human_size(self, transfer: Transfer) -> str:
        return size(transfer.size)

    @admin.display(description="rate")
    def human_rate(self, transfer: Transfer) -> str:
        duration = seconds(transfer.duration) if transfer.duration is not None else "—"
        return f"{rate(transfer.rate)} in {duration}" if transfer.rate else duration

    @admin.display(description="page")
    def page_link(self, transfer: Transfer) -> str:
        url = reverse("transfer-detail", args=[transfer.pk])
        return format_html('<a href="{}">progress, rate chart and tree</a>', url)

    @admin.action(description="Cancel selected casts")
    def cancel_transfers(self, request: HttpRequest, queryset: QuerySet[Transfer]) -> None:
        cancelled = sum(transfer_cancel(transfer=t) for t in queryset)
        skipped = queryset.count() - cancelled
        note = f" ({skipped} had already finished)" if skipped else ""
        self.message_user(request, f"Cancelled {cancelled} cast(s){note}.", messages.SUCCESS)

    @admin.action(description="Retry selected casts (new casts to the same targets)")
    def retry_transfers(self, request: HttpRequest, queryset: QuerySet[Transfer]) -> None:
        made, refused = [], []
        for transfer in queryset.select_related("source"):
            try:
                made.append(transfer_retry(transfer=transfer, requested_by=request.user))
            except CastError as exc:
                refused.append(f"#{transfer.pk}: {exc.message}")
        if made:
            ids = ", ".join(f"#{t.pk}" for t in made)
            self.message_user(request, f"Queued {len(made)} new cast(s): {ids}.", messages.SUCCESS)
        if refused:
            self.message_user(request, "Not retried: " + "; ".join(refused), messages.ERROR)


@admin.register(Target)
class TargetAdmin(admin.ModelAdmin):
    list_display = ["id", "transfer", "node", "status", "bytes_done", "rate", "parent", "attempts", "finished_at"]
    list_filter = ["status", "node"]
    search_fields = ["=transfer__id", "node__name", "error", "transfer__file_name"]
    list_select_related = ["node", "transfer", "transfer__source", "parent"]
    readonly_fields = [
        "transfer",
        "node",
        "status",
        "bytes_done",
        "bytes_received",
        "rate",
        "parent",
        "started_at",
        "finished_at",
        "error",
        "attempts",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class DeliveryInline(admin.TabularInline):
    model = Delivery
    verbose_name_plural = "deliveries"
    extra = 0
    can_delete = False
    fields = ["node", "status", "delivered_at", "error"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "sender", "cast_type", "kind", "status", "preview", "created_at", "delivered_at"]
    list_filter = ["status", "cast_type", "kind", "sender"]
    search_fields = ["=id", "content", "error", "sender__name", "deliveries__node__name"]
    list_select_related = ["sender"]
    date_hierarchy = "created_at"
    inlines = [DeliveryInline]
    readonly_fields = [
        "sender",
        "cast_type",
        "group",
        "kind",
        "content",
        "status",
        "error",
        "requested_by",
        "created_at",
        "delivered_at",
        "lease_owner",
        "lease_expires",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # messages are checked by message_create: use the API

    @admin.display(description="content")
    def preview(self, message: Message) -> str:
        return message.content[:60]


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "message", "node", "status", "delivered_at", "short_error"]
    list_filter = ["status", "node"]
    search_fields = ["=message__id", "node__name", "error"]
    list_select_related = ["message", "message__sender", "node"]
    readonly_fields = ["message", "node", "status", "delivered_at", "error"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="error")
    def short_error(self, delivery: Delivery) -> str:
        return delivery.error[:80]
