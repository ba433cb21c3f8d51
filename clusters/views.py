from __future__ import annotations

from rest_framework import viewsets

from clusters.models import Cluster
from clusters.serializers import ClusterSerializer


class ClusterViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Cluster.objects.all()
    serializer_class = ClusterSerializer
    filterset_fields = ["status", "active"]
