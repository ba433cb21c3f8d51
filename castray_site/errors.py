"""The one error type the domain raises: what went wrong, which field to fix, and the HTTP status.

Services, storage helpers and upload handlers raise a `DomainError` (or a subclass named for
its app, such as `CastError`); the API's exception handler (castray_site/api_errors.py) turns
every one into the same JSON answer, so views never convert errors by hand. Web pages and the
admin may still catch them to show the message beside the form. Plain Python, no Django: the
worker and the admin raise and catch these too.
"""

from __future__ import annotations


class DomainError(Exception):
    """A request that cannot be carried out; `field` names what to fix ("" when no one field does)."""

    status = 400

    def __init__(self, field: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        if status is not None:
            self.status = status


class Conflict(DomainError):
    """The request is valid but the resource's state does not allow it now."""

    status = 409
