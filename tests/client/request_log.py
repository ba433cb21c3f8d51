"""A middleware that appends every file download the server answers to a JSON-lines file
(CASTRAY_TEST_REQUEST_LOG): method, path, the Range header it got, the status and Content-Range
it answered. Only the client tests' server loads it (tests/client/server_settings.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class RangeRequestLog:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.path = os.environ.get("CASTRAY_TEST_REQUEST_LOG", "")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if self.path and request.method == "GET" and "/files/" in request.path and not request.path.endswith("/"):
            row = {
                "method": request.method,
                "path": request.path,
                "range": request.headers.get("Range", ""),
                "status": response.status_code,
                "content_range": response.get("Content-Range", ""),
            }
            with open(self.path, "a") as handle:
                handle.write(json.dumps(row) + "\n")
        return response
