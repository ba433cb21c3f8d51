"""Fetching a cast's origin URL into the source node's storage, through a bounded cache.

The source actor fetches an http(s):// or s3:// object once: streamed to a `.part` file in
`.castray/origins/`, hashed while it arrives (so the cast does not read it again), resumed
with a Range request after a dropped connection, and checked against the size and ETag the
origin announced. The finished object is hard-linked under the cast's name in the storage.
A later fetch of the same URL whose ETag, Last-Modified and size are unchanged is answered
from the cache without a second GET. The cache holds at most `OriginPolicy.cache_bytes`;
the least recently used objects are dropped first (a copy already linked into the storage
stays there: only the cache's link goes).
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urljoin

from dataplane.contract import OriginPolicy
from dataplane.origin_url import (
    BLOCK,
    Dropped,
    Meta,
    OriginError,
    OriginUrl,
    Source,
    parse_origin,
    sanitize_url,
    vet_host,
)
from dataplane.storage import META_DIR, PART_SUFFIX, Digester, Manifest, ManifestCache, clean_name, resolve_in

MAX_REDIRECTS = 5


def _pinned(address: str, port: int, timeout: float) -> Callable[..., socket.socket]:
    """A stand-in for http.client's socket.create_connection that connects to one address."""

    def connect(*_args: object, **_kwargs: object) -> socket.socket:
        return socket.create_connection((address, port), timeout)

    return connect


def _timeout_reason(url: str, timeout: float) -> str:
    return f"{url} did not answer within {timeout:g} s"


class HttpSource:
    """An http(s):// object, reached only at addresses `vet_host` allows, redirects checked too."""

    def __init__(self, url: str, policy: OriginPolicy) -> None:
        self.url = url
        self.safe = sanitize_url(url)
        self.policy = policy

    def _open(self, method: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            origin = parse_origin(url)
            if origin.scheme == "s3":
                raise OriginError(f"{self.safe} redirected to an s3:// URL")
            address = vet_host(origin.host, origin.port, allow_private=self.policy.allow_private)
            conn_class = http.client.HTTPSConnection if origin.scheme == "https" else http.client.HTTPConnection
            conn = conn_class(origin.host, origin.port, timeout=self.policy.timeout)

            # Connect to the vetted address, not to whatever the name resolves to a moment later.
            conn._create_connection = _pinned(address, origin.port, self.policy.timeout)  # type: ignore[attr-defined]
            try:
                conn.request(method, origin.path, headers={"Accept-Encoding": "identity", **headers})
                response = conn.getresponse()
            except TimeoutError:
                raise OriginError(_timeout_reason(self.safe, self.policy.timeout)) from None
            except ConnectionRefusedError:
                raise OriginError(f"{origin.host}:{origin.port} refused the connection") from None
            except (OSError, http.client.HTTPException) as exc:
                raise OriginError(f"cannot reach {self.safe}: {exc}") from None
            location = response.getheader("Location")
            if response.status in (301, 302, 303, 307, 308) and location:
                response.close()
                url = urljoin(url, location)
                continue
            if response.status >= 400:
                response.close()
                raise OriginError(f"{self.safe} answered {response.status} {response.reason}")
            return response
        raise OriginError(f"{self.safe} redirected more than {MAX_REDIRECTS} times")

    def probe(self) -> Meta:
        response = self._open("HEAD", {})
        response.close()
        length = response.getheader("Content-Length")
        return Meta(
            size=int(length) if length and length.isdigit() else -1,
            etag=response.getheader("ETag") or "",
            last_modified=response.getheader("Last-Modified") or "",
        )

    def read(self, offset: int, meta: Meta) -> Iterator[bytes]:
        headers: dict[str, str] = {}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            # If the object changed since, the origin sends all of it (200) instead of the rest.
            validator = meta.etag or meta.last_modified
            if validator:
                headers["If-Range"] = validator
        response = self._open("GET", headers)
        try:
            etag = response.getheader("ETag") or ""
            if meta.etag and etag and etag != meta.etag:
                raise OriginError(f"{self.safe} changed during the fetch (ETag {meta.etag} became {etag})")
            if offset and response.status != 206:
                raise OriginError(f"{self.safe} cannot resume a dropped fetch: it ignored the Range request")
            expected = _expected_total(response, offset)
            if meta.size >= 0 and expected is not None and expected != meta.size:
                raise OriginError(f"the size of {self.safe} changed during the fetch ({meta.size} -> {expected} bytes)")
            while True:
                try:
                    block = response.read(BLOCK)
                except TimeoutError:
                    raise Dropped(_timeout_reason(self.safe, self.policy.timeout)) from None
                except (OSError, http.client.HTTPException) as exc:
                    raise Dropped(str(exc)) from None
                if not block:
                    return
                yield block
        finally:
            response.close()


def _expected_total(response: http.client.HTTPResponse, offset: int) -> int | None:
    """The object's whole size as this response states it (Content-Range or Content-Length)."""
    if response.status == 206:
        content_range = response.getheader("Content-Range") or ""
        start, _, total = content_range.removeprefix("bytes ").partition("/")
        if not start.startswith(f"{offset}-"):
            raise OriginError(f"the origin resumed at the wrong place ({content_range!r} for byte {offset})")
        return int(total) if total.isdigit() else None
    length = response.getheader("Content-Length")
    return int(length) if length and length.isdigit() else None


def download(source: Source, meta: Meta, part: Path, chunk_size: int, policy: OriginPolicy, url: str) -> Manifest:
    """Stream the object into `part`, resuming after drops; return its manifest, hashed on the way."""
    digester = Digester(chunk_size)
    drops = 0
    try:
        with open(part, "wb") as out:
            while True:
                try:
                    for block in source.read(digester.size, meta):
                        out.write(block)
                        digester.update(block)
                        if 0 <= meta.size < digester.size:
                            raise OriginError(f"{url} sent more than the {meta.size} bytes it announced")
                    if meta.size < 0 or digester.size == meta.size:
                        break
                    raise Dropped(f"the connection closed after {digester.size} of {meta.size} bytes")
                except Dropped as exc:
                    drops += 1
                    if drops > policy.retries or meta.size < 0:
                        raise OriginError(f"fetching {url} failed after {drops} dropped connection(s): {exc}") from None
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise OriginError(f"no space left in the node's storage while fetching {url}") from None
        raise
    return digester.manifest()


def source_for(url: str, origin: OriginUrl, policy: OriginPolicy) -> Source:
    if origin.scheme == "s3":
        from dataplane.origin_s3 import S3Source  # boto3 is loaded only by actors that fetch from S3

        return S3Source(origin, policy)
    return HttpSource(url, policy)


class OriginCache:
    """Fetched objects in `.castray/origins/`, indexed by URL with their validators and manifest."""

    def __init__(self, root: Path, manifests: ManifestCache) -> None:
        self.root = Path(root)
        self.dir = self.root / META_DIR / "origins"
        self.manifests = manifests
        self.lock = threading.Lock()  # the index
        self.fetching: dict[str, threading.Lock] = {}  # one fetch per URL at a time
        self.fetches = 0  # objects fetched (not answered from the cache), for tests and stats

    def _index(self) -> dict[str, dict[str, object]]:
        try:
            return json.loads((self.dir / "index.json").read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, index: dict[str, dict[str, object]]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / "index.json.tmp"
        tmp.write_text(json.dumps(index))
        os.replace(tmp, self.dir / "index.json")

    @staticmethod
    def _identity(path: Path) -> list[int]:
        st = path.stat()
        return [st.st_size, st.st_mtime_ns, st.st_ino]

    def fetch(self, url: str, name: str, chunk_size: int, policy: OriginPolicy) -> tuple[Path, Manifest]:
        """Put the object at `url` under `name` in the storage; fetch it only if the cache lacks it."""
        origin = parse_origin(url)
        safe = sanitize_url(url)
        if origin.is_prefix:
            raise OriginError(f"{safe} names a directory (an S3 prefix); fetch it with fetch_prefix")
        dest = resolve_in(self.root, name)
        key = hashlib.sha256(safe.encode()).hexdigest()[:40]
        data = self.dir / f"{key}.data"
        with self.lock:
            url_lock = self.fetching.setdefault(key, threading.Lock())
        with url_lock:
            source = source_for(url, origin, policy)
            meta = source.probe()
            manifest = self._cached(key, data, meta, chunk_size)
            if manifest is None:
                manifest = self._fetch(source, meta, key, data, chunk_size, policy, safe)
            self._place(data, dest, name, manifest)
            self._evict(policy.cache_bytes)
        return dest, manifest

    def fetch_prefix(self, url: str, name: str, chunk_size: int, policy: OriginPolicy) -> int:
        """Make the directory `name` hold exactly the objects under an s3://bucket/prefix/; return their count.

        Each object goes through the cache on its own, so an unchanged object is not fetched
        again. Files under `name` that the prefix no longer has are removed: the directory is
        the prefix's copy, which the cast then publishes to the targets in one step.
        """
        from dataplane.origin_s3 import S3Source

        origin = parse_origin(url)
        listing = S3Source(origin, policy).keys()
        wanted = set()
        for key, _size in listing:
            if key.endswith("/"):
                continue  # a "folder" marker object
            rel = clean_name(key[len(origin.path) :])
            wanted.add(rel)
            self.fetch(f"s3://{origin.host}/{key}", f"{name}/{rel}", chunk_size, policy)
        top = resolve_in(self.root, name)
        top.mkdir(parents=True, exist_ok=True)
        for path in [p for p in top.rglob("*") if p.is_file() or p.is_symlink()]:
            if path.relative_to(top).as_posix() not in wanted:
                path.unlink()
        return len(wanted)

    def _cached(self, key: str, data: Path, meta: Meta, chunk_size: int) -> Manifest | None:
        with self.lock:
            index = self._index()
            entry = index.get(key)
            if not entry or meta.size < 0 or not (meta.etag or meta.last_modified):
                return None  # nothing to tell an unchanged object by: fetch again
            try:
                same_file = entry["identity"] == self._identity(data)
            except OSError:
                same_file = False
            unchanged = (entry["size"], entry["etag"], entry["last_modified"]) == (
                meta.size,
                meta.etag,
                meta.last_modified,
            )
            if not (same_file and unchanged):
                return None
            entry["used"] = time.time()
            self._save(index)
            manifest = Manifest(**entry["manifest"])  # type: ignore[arg-type]
        # Another chunk size than cached: rehash from the local copy, not from the origin.
        return manifest if manifest.chunk_size == chunk_size else self.manifests.get(key, data, chunk_size)

    def _fetch(
        self, source: Source, meta: Meta, key: str, data: Path, chunk_size: int, policy: OriginPolicy, safe: str
    ) -> Manifest:
        self.dir.mkdir(parents=True, exist_ok=True)
        part = self.dir / f"{key}{PART_SUFFIX}"
        try:
            manifest = download(source, meta, part, chunk_size, policy, safe)
            os.replace(part, data)
        finally:
            part.unlink(missing_ok=True)
        self.fetches += 1
        entry = {
            "url": safe,
            "size": manifest.size,
            "etag": meta.etag,
            "last_modified": meta.last_modified,
            "identity": self._identity(data),
            "manifest": asdict(manifest),
            "used": time.time(),
        }
        with self.lock:
            index = self._index()
            index[key] = entry
            self._save(index)
        return manifest

    def _place(self, data: Path, dest: Path, name: str, manifest: Manifest) -> None:
        """Link the cached object under its storage name, replacing what was there in one step."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists() and os.path.samefile(dest, data):
            self.manifests.put(name, dest, manifest)
            return
        tmp = dest.with_name(dest.name + PART_SUFFIX)
        tmp.unlink(missing_ok=True)
        try:
            os.link(data, tmp)
        except OSError:
            shutil.copy2(data, tmp)  # a filesystem without hard links
        os.replace(tmp, dest)
        self.manifests.put(name, dest, manifest)

    def _evict(self, bound: int) -> None:
        """Drop the least recently used objects until the cache holds at most `bound` bytes."""
        with self.lock:
            index = self._index()
            total = sum(int(e["size"]) for e in index.values())  # type: ignore[call-overload]
            for key, entry in sorted(index.items(), key=lambda kv: float(kv[1]["used"])):  # type: ignore[arg-type]
                if total <= bound:
                    break
                (self.dir / f"{key}.data").unlink(missing_ok=True)
                total -= int(entry["size"])  # type: ignore[call-overload]
                del index[key]
            self._save(index)
