"""The HTTP plumbing under `Client`: one error type, retries where they are safe, pages."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, TypeVar

import httpx

from castray_client import __version__

API = "/api/v1"
PAGE = 500  # the server's largest page
# Methods that may be sent again after a connection broke mid-request: they change nothing
# twice. A POST is only sent again when the connection never opened (nothing was sent).
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUS = frozenset({429, 502, 503, 504})
READ_BLOCK = 1024 * 1024


class CastRayError(Exception):
    """Anything that went wrong talking to CastRay.

    `status` is the HTTP status for an answer in 4xx/5xx (None when the server could not be
    reached), `message` the server's own explanation, `body` its decoded JSON.
    """

    def __init__(self, message: str, *, status: int | None = None, body: Any = None, url: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body
        self.url = url

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        return f"{self.status} {httpx.codes.get_reason_phrase(self.status)}: {self.message}"


class WaitTimeout(CastRayError, TimeoutError):
    """A wait ran out of time; what it waited for goes on."""


def error_from(response: httpx.Response) -> CastRayError:
    body: Any = None
    message = ""
    try:
        body = response.json()
    except ValueError:
        message = response.text.strip()[:300]
    if isinstance(body, dict):
        message = str(body.get("message") or body.get("detail") or "")
        if not message and body:
            # DRF's token endpoint answers {"non_field_errors": [...]} and the like.
            key, value = next(iter(body.items()))
            first = value[0] if isinstance(value, list) and value else value
            message = f"{key}: {first}" if key != "non_field_errors" else str(first)
    return CastRayError(
        message or response.reason_phrase, status=response.status_code, body=body, url=str(response.request.url)
    )


T = TypeVar("T", bound="Transport")  # typing.Self needs Python 3.11; the client supports 3.10


class Transport:
    """An HTTP session with CastRay: the token, timeouts, retries and the error mapping."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token or ""
        self.retries = retries
        self.backoff = backoff
        headers = {"User-Agent": f"castray-client/{__version__}", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        self.http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
        )

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # --- plumbing ------------------------------------------------------------------------
    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request, retried where that is safe; raises CastRayError for 4xx/5xx."""
        attempt = 0
        while True:
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if attempt < self.retries and (never_sent or method in IDEMPOTENT) and "content" not in kwargs:
                    time.sleep(self.backoff * 2**attempt)
                    attempt += 1
                    continue
                raise CastRayError(f"cannot reach CastRay at {self.url}: {exc or type(exc).__name__}") from exc
            if response.status_code in RETRY_STATUS and method in IDEMPOTENT and attempt < self.retries:
                wait = self.backoff * 2**attempt
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    wait = min(float(retry_after), 30.0)
                time.sleep(wait)
                attempt += 1
                continue
            if response.status_code >= 400:
                raise error_from(response)
            return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _pages(self, path: str, params: dict[str, Any] | None = None, limit: int | None = None) -> Iterator[Any]:
        """Every row of a paginated list (or the first `limit`)."""
        offset = 0
        query = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        while True:
            size = PAGE if limit is None else max(0, min(PAGE, limit - offset))
            if size == 0:
                return
            body = self._json("GET", path, params={**query, "limit": size, "offset": offset})
            rows = body["results"] if isinstance(body, dict) else body
            yield from rows
            offset += len(rows)
            if not isinstance(body, dict) or not rows or offset >= body.get("count", 0):
                return
