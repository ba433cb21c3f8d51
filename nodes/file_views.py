"""Files in a node's storage: list, upload (streamed), download (with Range), delete, generate."""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from django.conf import settings
from django.http import FileResponse, HttpRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from castray_site.api import AnyAcceptNegotiation
from castray_site.permissions import ReadOrStaffDeletes
from dataplane.generator import CONTENT_TYPES, PRESETS
from dataplane.storage import resolve_in
from nodes.file_services import file_delete, file_generate, file_place
from nodes.files import FileInfo, NotOnThisHost, list_files, local_root
from nodes.models import Node
from nodes.serializers import FileGenerateSerializer, FileInfoSerializer, FileListQuerySerializer, FileUploadSerializer
from nodes.uploads import StagedUpload, StorageUploadHandler
from transfers.serializers import GeneratedFileSerializer, PresetsSerializer
from transfers.services import resolve_targets, transfer_create

READ_BLOCK = 1024 * 1024
# Answers particular to files (the schema adds the ones every operation shares).
ELSEWHERE = "the node's storage is not on this server's host"
UNSAFE_NAME = OpenApiResponse(description="The name is not a safe path in the node's storage, or too long.")
NO_ROOM = OpenApiResponse(description="The node's storage has not enough free space.")


def get_node(name: str) -> Node:
    node = Node.objects.named(name)
    if node is None:
        raise NotFound(f"no node named {name!r}; GET /api/v1/nodes/ lists them")
    return node


def file_payload(request: Request, node: Node, info: FileInfo) -> dict[str, Any]:
    url = reverse("v1:node-file", kwargs={"name": node.name, "file_path": info.name})
    return {**asdict(info), "download_url": request.build_absolute_uri(url)}


class RefuseUpload:
    """Stands in for the upload handler when the upload cannot go anywhere: refuses before reading."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def handle_raw_input(self, *args: Any, **kwargs: Any) -> None:
        raise self.error


class NodeFilesView(GenericAPIView):
    """A node's files: list them, or upload one (multipart, streamed into the node's storage)."""

    queryset = Node.objects.none()  # for the schema: the path's `name` is a node's

    serializer_class = FileInfoSerializer
    parser_classes = [MultiPartParser]
    staging: StorageUploadHandler | None = None

    def initialize_request(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Request:
        # The handler must be in place before anything reads the body (the CSRF check of a
        # session login does, during authentication).
        is_upload = request.content_type == "multipart/form-data"
        if request.method == "POST" and is_upload and not getattr(self, "swagger_fake_view", False):
            node = Node.objects.named(kwargs.get("name", ""))
            handler: Any
            if node is None:
                handler = RefuseUpload(NotFound(f"no node named {kwargs.get('name')!r}"))
            else:
                try:
                    handler = self.staging = StorageUploadHandler(
                        request,
                        root=local_root(node),
                        limit=settings.CASTRAY_MAX_UPLOAD_SIZE,
                        chunk_size=settings.CASTRAY_CHUNK_SIZE,
                    )
                except NotOnThisHost as exc:
                    handler = RefuseUpload(exc)
            request.upload_handlers = [handler]
        return super().initialize_request(request, *args, **kwargs)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            # Whatever was staged and not placed goes, however the request ended: a second
            # file, a refused name, or a form the CSRF check read before refusing the request
            # (too many files, a wrong token) and the view never saw.
            if self.staging is not None:
                self.staging.cleanup()

    @extend_schema(
        parameters=[FileListQuerySerializer],
        responses={200: FileInfoSerializer(many=True), 409: OpenApiResponse(description=f"{ELSEWHERE}.")},
    )
    def get(self, request: Request, name: str) -> Response:
        node = get_node(name)
        query = FileListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        compute = query.validated_data["hash"]
        infos = list_files(local_root(node), compute_sha256=compute, chunk_size=settings.CASTRAY_CHUNK_SIZE)
        page = self.paginate_queryset(infos)
        data = [file_payload(request, node, info) for info in page or []]
        return self.get_paginated_response(FileInfoSerializer(data, many=True).data)

    @extend_schema(
        request={"multipart/form-data": FileUploadSerializer},
        responses={
            201: FileInfoSerializer,
            409: OpenApiResponse(description=f"The name exists (and overwrite is not set), or {ELSEWHERE}."),
            413: OpenApiResponse(description="The file is larger than CASTRAY_MAX_UPLOAD_SIZE."),
            507: NO_ROOM,
        },
    )
    def post(self, request: Request, name: str) -> Response:
        node = get_node(name)
        root = local_root(node)
        serializer = FileUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data["file"]
        if not isinstance(upload, StagedUpload):
            raise ValidationError({"file": ["send the file as multipart/form-data"]})
        info = file_place(
            root=root,
            name=serializer.validated_data.get("name") or upload.name,
            staged=upload.path,
            manifest=upload.manifest,
            overwrite=serializer.validated_data["overwrite"],
        )
        return Response(FileInfoSerializer(file_payload(request, node, info)).data, status=status.HTTP_201_CREATED)


_RANGE = re.compile(r"\s*(\d*)\s*-\s*(\d*)\s*")


def parse_range(header: str, size: int) -> tuple[int, int] | None | str:
    """(start, end inclusive) for a single byte range; None to send the whole file; a reason
    string when the range cannot be satisfied."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # other units, several ranges: the whole file is a valid answer
    match = _RANGE.fullmatch(spec)
    if not match or not (match[1] or match[2]):
        return f"{header!r} is not a byte range; use e.g. bytes=0-1023, bytes=1024- or bytes=-512"
    if match[1]:
        start = int(match[1])
        end = int(match[2]) if match[2] else size - 1
        if end < start:
            return f"the range {header!r} ends before it starts"
        if start >= size:
            return f"the range {header!r} starts at or after the end of the file ({size} bytes)"
        return start, min(end, size - 1)
    suffix = int(match[2])
    if suffix == 0 or size == 0:
        return f"the range {header!r} selects no bytes of a {size}-byte file"
    return max(0, size - suffix), size - 1


def _read_range(path: Path, start: int, length: int) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        handle.seek(start)
        while length > 0:
            data = handle.read(min(READ_BLOCK, length))
            if not data:
                break
            length -= len(data)
            yield data


class NodeFileView(GenericAPIView):
    """One file: download it (with HTTP Range for a part), or delete it (staff)."""

    queryset = Node.objects.none()  # for the schema: the path's `name` is a node's

    permission_classes = [ReadOrStaffDeletes]
    content_negotiation_class = AnyAcceptNegotiation
    serializer_class = FileInfoSerializer

    @extend_schema(
        parameters=[OpenApiParameter("Range", str, OpenApiParameter.HEADER, description="e.g. bytes=0-1023")],
        responses={
            # The media type the file's name suggests (application/octet-stream when none does).
            (200, "*/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The file."),
            (206, "*/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The range asked."),
            400: UNSAFE_NAME,
            409: OpenApiResponse(description=f"{ELSEWHERE}."),
            416: OpenApiResponse(description="The range cannot be satisfied."),
        },
    )
    def get(self, request: Request, name: str, file_path: str) -> HttpResponseBase:
        node = get_node(name)
        root = local_root(node)
        path = resolve_in(root, file_path)
        if not path.is_file():
            raise NotFound(f"{file_path} does not exist in {node.name}'s storage; GET its files/ lists them")
        size = path.stat().st_size
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        header = request.META.get("HTTP_RANGE", "")
        wanted = parse_range(header, size) if header else None
        if isinstance(wanted, str):
            response: HttpResponseBase = Response(
                {"success": False, "message": f"Range: {wanted}"},
                status=status.HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
            )
            response["Content-Range"] = f"bytes */{size}"
        elif wanted is None:
            response = FileResponse(open(path, "rb"), as_attachment=True, filename=path.name)  # noqa: SIM115
        else:
            start, end = wanted
            response = StreamingHttpResponse(
                _read_range(path, start, end - start + 1), status=206, content_type=content_type
            )
            response["Content-Length"] = str(end - start + 1)
            response["Content-Range"] = f"bytes {start}-{end}/{size}"
            response["Content-Disposition"] = content_disposition_header(True, path.name)
        response["Accept-Ranges"] = "bytes"
        return response

    @extend_schema(
        responses={
            204: None,
            400: UNSAFE_NAME,
            409: OpenApiResponse(description=f"{ELSEWHERE}."),
        }
    )
    def delete(self, request: Request, name: str, file_path: str) -> Response:
        file_delete(node=get_node(name), name=file_path)
        return Response(status=status.HTTP_204_NO_CONTENT)


class NodeFileGenerateView(GenericAPIView):
    """Write a file of an exact size (text, random or pattern) into a node's storage; optionally cast it."""

    queryset = Node.objects.none()  # for the schema: the path's `name` is a node's

    serializer_class = FileGenerateSerializer

    @extend_schema(
        request=FileGenerateSerializer,
        responses={
            201: GeneratedFileSerializer,
            409: OpenApiResponse(description=f"The name exists (and overwrite is not set), or {ELSEWHERE}."),
            507: NO_ROOM,
        },
    )
    def post(self, request: Request, name: str) -> Response:
        node = get_node(name)
        serializer = FileGenerateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        cast = data.get("cast")
        if cast:
            # Refuse impossible targets before writing a byte.
            resolve_targets(
                source=node, targets=cast.get("targets"), group=cast.get("group"), broadcast=cast["broadcast"]
            )
        info = file_generate(
            node=node, name=data["name"], size=data["size"], content=data["content"], overwrite=data["overwrite"]
        )
        transfer = None
        if cast:
            transfer = transfer_create(
                source=node,
                file_name=info.name,
                targets=cast.get("targets"),
                group=cast.get("group"),
                broadcast=cast["broadcast"],
                requested_by=request.user,
                mode=cast["mode"],
                priority=cast["priority"],
                fan_out=cast["fan_out"],
            )
        body = GeneratedFileSerializer(
            {"file": file_payload(request, node, info), "transfer": transfer}, context={"request": request}
        ).data
        return Response(body, status=status.HTTP_201_CREATED)


class GeneratorPresetsView(GenericAPIView):
    """The generator's preset sizes and content types."""

    serializer_class = PresetsSerializer

    def get(self, request: Request) -> Response:
        return Response(PresetsSerializer({"presets": PRESETS, "content_types": list(CONTENT_TYPES)}).data)
