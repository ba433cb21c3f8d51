from __future__ import annotations

from rest_framework import mixins, serializers, viewsets
from rest_framework.serializers import BaseSerializer

from transfers.models import Transfer
from transfers.serializers import TransferSerializer
from transfers.services import CastError, transfer_create


class TransferViewSet(
    mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    queryset = Transfer.objects.select_related("source", "requested_by").prefetch_related(
        "targets__node", "targets__parent"
    )
    serializer_class = TransferSerializer
    filterset_fields = ["status", "mode", "source__name"]
    ordering_fields = ["created_at", "priority", "status", "size"]

    def perform_create(self, serializer: BaseSerializer) -> None:
        data = serializer.validated_data
        try:
            serializer.instance = transfer_create(
                source=data["source"],
                file_name=data["file_name"],
                targets=data["targets"],
                requested_by=self.request.user,
                mode=data.get("mode", Transfer.Mode.TCP),
                priority=data.get("priority", 0),
            )
        except CastError as exc:
            raise serializers.ValidationError({exc.field: exc.message}) from None
