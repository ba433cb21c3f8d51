"""Casts from an origin URL: what may be recorded and under which name the source keeps it.

The source's actor does the fetching and the address checks that need DNS
(dataplane/origin.py); here a request is checked for what can be told without the network.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings

from dataplane.origin_url import OriginError, address_problem, default_name, parse_origin, sanitize_url
from dataplane.storage import clean_name
from transfers.services.targets import CastError


def origin_check(*, url: str, file_name: str = "") -> tuple[str, str]:
    """(the URL as it may be recorded, the name the source stores it under); raises CastError.

    Credentials in the URL (user-info, signatures, tokens) are dropped: they must not reach
    the database, the API, logs or events. Origins that need them use boto3's credential
    chain (s3://) on the source's host.
    """
    try:
        origin = parse_origin(url)
        _refuse_literal_address(origin.host)
        name = clean_name(file_name) if file_name else default_name(url)
    except ValueError as exc:
        raise CastError("file_name", str(exc)) from None
    except OriginError as exc:
        raise CastError("origin", str(exc)) from None
    return sanitize_url(url), name


def _refuse_literal_address(host: str) -> None:
    # Names are resolved and checked by the source's actor; an address given as such is refused now.
    try:
        address = str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return
    problem = address_problem(address, allow_private=settings.CASTRAY_ORIGIN_ALLOW_PRIVATE)
    if problem:
        raise OriginError(f"refused to fetch from {host}: {problem}")
