from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from transfers.models import Target, Transfer
from transfers.services import transfer_cancel


class TargetInline(admin.TabularInline):
    model = Target
    fk_name = "transfer"
    extra = 0
    can_delete = False
    fields = ["node", "status", "bytes_done", "rate", "parent", "started_at", "finished_at", "attempts", "error"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Transfer)
class TransferAdmin(admin.ModelAdmin):
    list_display = ["id", "file_name", "source", "mode", "status", "size", "priority", "created_at", "finished_at"]
    list_filter = ["status", "mode", "source"]
    search_fields = ["file_name", "sha256", "error", "source__name"]
    list_select_related = ["source"]
    inlines = [TargetInline]
    readonly_fields = [
        "status",
        "size",
        "sha256",
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
    actions = ["cancel_transfers"]

    @admin.action(description="Cancel selected transfers")
    def cancel_transfers(self, request: HttpRequest, queryset: QuerySet[Transfer]) -> None:
        cancelled = sum(transfer_cancel(transfer=t) for t in queryset)
        self.message_user(request, f"Cancelled {cancelled} transfer(s).", messages.SUCCESS)


@admin.register(Target)
class TargetAdmin(admin.ModelAdmin):
    list_display = ["id", "transfer", "node", "status", "bytes_done", "rate", "attempts", "finished_at"]
    list_filter = ["status", "node"]
    search_fields = ["node__name", "error", "transfer__file_name"]
    list_select_related = ["node", "transfer"]
    readonly_fields = [
        "transfer",
        "node",
        "status",
        "bytes_done",
        "rate",
        "parent",
        "started_at",
        "finished_at",
        "error",
        "attempts",
    ]
