"""Origin URLs: which ones a cast may name, how they are recorded, which hosts may be reached.

Pure helpers, imported by the control plane (to check and record a URL when a cast is
created) and by the node actor (to check every address before it connects). No Django.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from dataplane.storage import UnsafePath, clean_name

SCHEMES = ("http", "https", "s3")
MAX_URL_LENGTH = 4096
# Query parameters that carry a credential or a signature (S3 presigned URLs, Azure SAS,
# Google signed URLs, API keys, tokens): never written to the database, logs or events.
SECRET_PARAMS = frozenset(
    {
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "signature",
        "awsaccesskeyid",
        "sig",
        "x-goog-signature",
        "x-goog-credential",
        "token",
        "access_token",
        "api_key",
        "apikey",
        "key",
        "password",
        "secret",
    }
)
# Cloud metadata services: refused always, whatever the operator allows. Link-local
# (169.254/16, fe80::/10) is refused as a whole; these are the others.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"})


BLOCK = 1024 * 1024  # what a fetch reads and writes at a time


class OriginError(OSError):
    """A URL that cannot or may not be fetched; the message is the reason, in words, without credentials."""


@dataclass(frozen=True)
class Meta:
    """What the origin says about an object: its size (-1: not said) and the cache's validators."""

    size: int
    etag: str = ""
    last_modified: str = ""


class Dropped(Exception):
    """The body stopped before its end: the fetch resumes from what arrived."""


class Source(Protocol):
    """An object at an origin (dataplane/origin.py: HTTP, dataplane/origin_s3.py: S3)."""

    def probe(self) -> Meta: ...

    def read(self, offset: int, meta: Meta) -> Iterator[bytes]: ...


@dataclass(frozen=True)
class OriginUrl:
    scheme: str
    host: str  # the HTTP host, or the S3 bucket
    port: int
    path: str  # HTTP: path and query; S3: the key or prefix (no leading slash)

    @property
    def is_prefix(self) -> bool:
        """An s3://bucket/prefix/ names a directory of objects."""
        return self.scheme == "s3" and (self.path == "" or self.path.endswith("/"))


def parse_origin(url: str) -> OriginUrl:
    """Check a URL's form (scheme, host, length); raise OriginError with the reason."""
    if not isinstance(url, str) or not url.strip():
        raise OriginError("the origin URL is empty")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise OriginError(f"the origin URL is longer than {MAX_URL_LENGTH} characters")
    if any(ord(ch) < 33 or ch == "\x7f" for ch in url):
        raise OriginError("the origin URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise OriginError(f"the origin URL is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise OriginError(f"origin URLs must be {', '.join(s + '://' for s in SCHEMES)}; not {scheme or 'a bare path'}")
    host = (parts.hostname or "").lower()
    if not host:
        raise OriginError("the origin URL names no host" if scheme != "s3" else "the s3:// URL names no bucket")
    if scheme == "s3":
        return OriginUrl("s3", host, 0, parts.path.lstrip("/"))
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return OriginUrl(scheme, host, port or (443 if scheme == "https" else 80), path)


def sanitize_url(url: str) -> str:
    """The URL as it may be recorded: without user-info, signatures or tokens in the query, or fragment."""
    parts = urlsplit(url.strip())
    netloc = parts.hostname or ""
    if ":" in netloc:  # an IPv6 literal
        netloc = f"[{netloc}]"
    try:
        if parts.port is not None:
            netloc += f":{parts.port}"
    except ValueError:
        pass
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in SECRET_PARAMS]
    return urlunsplit((parts.scheme.lower(), netloc, parts.path, urlencode(query), ""))


def default_name(url: str) -> str:
    """The storage name a URL's content gets when the cast names none: its last path segment."""
    origin = parse_origin(url)
    segment = PurePosixPath(urlsplit(url).path.rstrip("/")).name or origin.host
    try:
        return clean_name(segment)
    except UnsafePath:
        return clean_name(origin.host)


def address_problem(address: str, *, allow_private: bool) -> str:
    """Why a resolved address may not be fetched from ("" if it may)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if ip.is_multicast or ip.is_unspecified:
        return f"{ip} is not a host address"
    if not allow_private and (ip.is_loopback or ip.is_private or ip.is_reserved):
        return f"{ip} is a loopback or private address (an operator may allow those with CASTRAY_ORIGIN_ALLOW_PRIVATE)"
    return ""


def vet_host(host: str, port: int, *, allow_private: bool) -> str:
    """Resolve `host` and return an address to connect to, if every address it has may be reached.

    Every address is checked, not only the first: a name resolving to a public and a
    private address could be answered differently at connect time. The caller connects to
    the address returned, so a second resolution cannot swap in another.
    """
    if host.rstrip(".") in METADATA_HOSTS:
        raise OriginError(f"{host} is a cloud metadata host; origins may not name it")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OriginError(f"cannot resolve {host}: {exc.strerror or exc}") from None
    addresses = [str(info[4][0]) for info in infos]
    for address in addresses:
        problem = address_problem(address, allow_private=allow_private)
        if problem:
            raise OriginError(f"refused to fetch from {host}: {problem}")
    if not addresses:
        raise OriginError(f"cannot resolve {host}: no addresses")
    return addresses[0]
