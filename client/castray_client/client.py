"""`Client`: CastRay's REST API over HTTP, with typed results, one error type, retries and timeouts."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from castray_client.models import Cast, FileInfo, Group, Message, Node
from castray_client.transport import API, READ_BLOCK, CastRayError, Transport, WaitTimeout, error_from

# The errors are part of this module's interface: callers catch them beside Client.
__all__ = ["CastRayError", "Client", "Download", "WaitTimeout", "target_choice"]

Progress = Callable[[int], None]


def target_choice(to: str | Iterable[str]) -> dict[str, Any]:
    """The API's target fields for `all`, `group:NAME`, `a,b,c` or a list of node names."""
    if isinstance(to, str):
        text = to.strip()
        if text == "all":
            return {"broadcast": True}
        if text.startswith("group:"):
            name = text[len("group:") :].strip()
            if not name:
                raise ValueError("group: needs a group name, e.g. group:gpus")
            return {"group": name}
        names = [part.strip() for part in text.split(",")]
    else:
        names = [str(part).strip() for part in to]
    if not names or any(not name for name in names):
        raise ValueError("give targets as all, group:NAME, or node names separated by commas (no empty names)")
    return {"targets": list(dict.fromkeys(names))}


@dataclass
class Download:
    path: Path
    size: int
    sha256: str
    verified: bool  # the server knew the file's SHA-256 and it matched
    resumed_from: int  # bytes already on disk when this download started (0: from the start)


class Client(Transport):
    """CastRay's API. `url` is the server's address (http://host:8000), `token` an API token.

    Every error, from the server (4xx/5xx, with its message) or the network, raises
    `CastRayError`. Reads and other idempotent calls are retried on connection errors with
    exponential backoff (`retries` times); every call times out after `timeout` seconds of
    silence.
    """

    @staticmethod
    def login(url: str, username: str, password: str, *, timeout: float = 30.0) -> str:
        """Exchange a username and password for the user's API token."""
        with Client(url, timeout=timeout) as anonymous:
            body = anonymous._json("POST", f"{API}/auth/token/", json={"username": username, "password": password})
        return str(body["token"])

    # --- nodes and groups ------------------------------------------------------------------
    def nodes(self) -> list[Node]:
        return [Node.from_api(row) for row in self._pages(f"{API}/nodes/", {"ordering": "name"})]

    def node(self, name: str) -> Node:
        return Node.from_api(self._json("GET", f"{API}/nodes/{quote(name)}/"))

    def update_node(self, name: str, **fields: Any) -> Node:
        """Change a node (staff): egress_cap, ingress_cap (bytes/s), max_concurrent, storage_dir..."""
        return Node.from_api(self._json("PATCH", f"{API}/nodes/{quote(name)}/", json=fields))

    def set_node_enabled(self, name: str, enabled: bool) -> Node:
        action = "enable" if enabled else "disable"
        return Node.from_api(self._json("POST", f"{API}/nodes/{quote(name)}/{action}/"))

    def groups(self) -> list[Group]:
        return [Group.from_api(row) for row in self._pages(f"{API}/groups/", {"ordering": "name"})]

    def first_online_node(self) -> Node:
        for node in self.nodes():
            if node.online:
                return node
        raise CastRayError("no node is online")

    # --- casts -----------------------------------------------------------------------------
    def cast(
        self,
        source: str,
        file_name: str,
        *,
        to: str | Iterable[str] = "all",
        mode: str = "tcp",
        fan_out: int = 0,
        priority: int = 0,
        dest_name: str = "",
    ) -> Cast:
        """Queue a cast of `file_name` in `source`'s storage to `to` (all, group:NAME or names)."""
        payload = {
            "source": source,
            "file_name": file_name,
            **target_choice(to),
            "mode": mode,
            "fan_out": fan_out,
            "priority": priority,
            "dest_name": dest_name,
        }
        return Cast.from_api(self._json("POST", f"{API}/transfers/", json=payload), self)

    def cast_url(
        self,
        url: str,
        *,
        via: str,
        to: str | Iterable[str] = "all",
        mode: str = "tcp",
        fan_out: int = 0,
        priority: int = 0,
        dest_name: str = "",
    ) -> Cast:
        """Cast what `url` holds: `via` fetches it once, then casts it.

        Needs a server that supports origins; one that does not answers 400 (CastRayError).
        """
        payload = {
            "source": via,
            "origin": url,
            **target_choice(to),
            "mode": mode,
            "fan_out": fan_out,
            "priority": priority,
            "dest_name": dest_name,
        }
        return Cast.from_api(self._json("POST", f"{API}/transfers/", json=payload), self)

    def get_cast(self, cast_id: int) -> Cast:
        return Cast.from_api(self._json("GET", f"{API}/transfers/{int(cast_id)}/"), self)

    def casts(self, *, limit: int = 50, **filters: Any) -> list[Cast]:
        """Casts, newest first; filters as the API's: status, mode, cast_type, source, target,
        group, requested_by, created_after, created_before, search, ordering."""
        params = {"ordering": "-id", **filters}
        return [Cast.from_api(row, self) for row in self._pages(f"{API}/transfers/", params, limit=limit)]

    def cancel(self, cast_id: int) -> Cast:
        return Cast.from_api(self._json("POST", f"{API}/transfers/{int(cast_id)}/cancel/"), self)

    def retry(self, cast_id: int) -> Cast:
        return Cast.from_api(self._json("POST", f"{API}/transfers/{int(cast_id)}/retry/"), self)

    def clusters(self) -> list[dict[str, Any]]:
        return list(self._pages(f"{API}/clusters/", {"active": "true"}))

    # --- files -----------------------------------------------------------------------------
    def files(self, node: str, prefix: str = "", *, compute_sha256: bool = False) -> list[FileInfo]:
        """Files in a node's storage (those under `prefix`, a directory or a file name)."""
        params = {"hash": "1"} if compute_sha256 else {}
        rows = (FileInfo.from_api(row) for row in self._pages(f"{API}/nodes/{quote(node)}/files/", params))
        wanted = prefix.strip("/")
        if not wanted:
            return list(rows)
        return [f for f in rows if f.name == wanted or f.name.startswith(wanted + "/")]

    def file_info(self, node: str, path: str) -> FileInfo | None:
        wanted = path.strip("/")
        return next((f for f in self.files(node, wanted) if f.name == wanted), None)

    def upload(
        self,
        node: str,
        local: str | os.PathLike[str],
        name: str | None = None,
        *,
        overwrite: bool = False,
        progress: Progress | None = None,
    ) -> FileInfo:
        """Stream a local file into a node's storage as `name` (default: its file name).

        The body is written as it is read (multipart/form-data, with its length), so a file of
        any size goes up without being held in memory.
        """
        path = Path(local)
        size = path.stat().st_size
        boundary = "castray-" + secrets.token_hex(12)
        fields = {"name": name or path.name, **({"overwrite": "true"} if overwrite else {})}
        head = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'.encode() + value.encode() + b"\r\n"
            for key, value in fields.items()
        )
        # The server names the file from the `name` field; the part's filename only has to be safe.
        safe = "".join(c for c in path.name if c.isascii() and c.isprintable() and c not in '"\\') or "upload"
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{safe}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        def body() -> Iterator[bytes]:
            yield head
            with open(path, "rb") as handle:
                while block := handle.read(READ_BLOCK):
                    yield block
                    if progress is not None:
                        progress(len(block))
            yield tail

        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(head) + size + len(tail)),
        }
        response = self._send(
            "POST",
            f"{API}/nodes/{quote(node)}/files/",
            content=body(),
            headers=headers,
            timeout=httpx.Timeout(300.0, connect=10.0),
        )
        return FileInfo.from_api(response.json())

    def download(
        self,
        node: str,
        path: str,
        local: str | os.PathLike[str] | None = None,
        *,
        resume: bool = True,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> Download:
        """Download a file from a node's storage into `local` (a file, or a directory to put it in).

        The bytes go to `<local>.part`; an existing `.part` is resumed with an HTTP Range
        request, and a connection that breaks mid-way is resumed the same way. When the server
        knows the file's SHA-256 the result is checked against it (a resumed file that does
        not match is fetched again whole) before it is renamed to `local`. `progress(done, total)`
        is called as bytes arrive.
        """
        name = path.strip("/")
        target = Path(local) if local is not None else Path(Path(name).name)
        if target.is_dir():
            target = target / Path(name).name
        part = target.with_name(target.name + ".part")
        info = self.file_info(node, name)
        expected = info.sha256 if info else None
        started_from = part.stat().st_size if resume and part.exists() else 0
        for whole_again in (False, True):
            try:
                digest, size = self._fetch(node, name, part, resume=resume and not whole_again, progress=progress)
            except CastRayError:
                # An empty .part (a refused download) helps nobody; one with bytes is kept to resume.
                if part.exists() and part.stat().st_size == 0:
                    part.unlink()
                raise
            if expected is None or digest == expected:
                os.replace(part, target)
                return Download(target, size, digest, verified=expected is not None, resumed_from=started_from)
            if whole_again or started_from == 0:
                break
            part.unlink(missing_ok=True)  # the resumed part was not this file's: fetch it whole
        raise CastRayError(
            f"{node}:{name} arrived with SHA-256 {digest}, the server's is {expected}; the copy was kept as {part}"
        )

    def _fetch(
        self, node: str, name: str, part: Path, *, resume: bool, progress: Callable[[int, int | None], None] | None
    ) -> tuple[str, int]:
        """Bring `part` up to the whole file, resuming after broken connections. (sha256, size)."""
        url = f"{API}/nodes/{quote(node)}/files/{quote(name)}"
        digest = hashlib.sha256()
        offset = 0
        if resume and part.exists():
            # The bytes already here count towards the hash: read them once.
            with open(part, "rb") as handle:
                while block := handle.read(READ_BLOCK):
                    digest.update(block)
                    offset += len(block)
        else:
            part.parent.mkdir(parents=True, exist_ok=True)
            part.write_bytes(b"")
        attempt = 0
        total: int | None = None
        while True:
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            try:
                with self.http.stream(
                    "GET", url, headers=headers, timeout=httpx.Timeout(60.0, connect=10.0)
                ) as response:
                    if response.status_code == 416 and offset:
                        # Nothing after `offset`: the part already holds the whole file (or more).
                        total = int(response.headers.get("Content-Range", "*/-1").rpartition("/")[2])
                        if total == offset:
                            return digest.hexdigest(), offset
                        part.write_bytes(b"")
                        digest, offset = hashlib.sha256(), 0
                        continue
                    if response.status_code >= 400:
                        response.read()
                        raise error_from(response)
                    if response.status_code == 200 and offset:
                        # The server sent the whole file after all: start the part again.
                        part.write_bytes(b"")
                        digest, offset = hashlib.sha256(), 0
                    if response.status_code == 206:
                        total = int(response.headers["Content-Range"].rpartition("/")[2])
                    else:
                        total = int(response.headers.get("Content-Length", "-1"))
                        total = None if total < 0 else total
                    if progress is not None:
                        progress(offset, total)
                    with open(part, "ab", buffering=0) as out:
                        for block in response.iter_bytes(READ_BLOCK):
                            out.write(block)
                            digest.update(block)
                            offset += len(block)
                            if progress is not None:
                                progress(offset, total)
                if total is None or offset >= total:
                    return digest.hexdigest(), offset
                raise httpx.RemoteProtocolError(f"the connection closed after {offset} of {total} bytes")
            except httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise CastRayError(
                        f"download of {node}:{name} broke off at {offset} bytes ({exc}); run it again to resume"
                    ) from exc
                time.sleep(self.backoff * 2**attempt)
                attempt += 1

    def delete(self, node: str, path: str) -> None:
        self._send("DELETE", f"{API}/nodes/{quote(node)}/files/{quote(path.strip('/'))}")

    # --- messages --------------------------------------------------------------------------
    def send(
        self, content: str, *, sender: str, to: str | Iterable[str] = "all", message_type: str = "text"
    ) -> Message:
        """Send a text (or JSON text, with message_type="json") message to nodes' inboxes."""
        payload = {"sender": sender, "content": content, "message_type": message_type, **target_choice(to)}
        return Message.from_api(self._json("POST", f"{API}/messages/", json=payload))

    def inbox(self, node: str, *, status: str | None = None, limit: int = 50) -> list[Message]:
        rows = self._pages(f"{API}/nodes/{quote(node)}/inbox/", {"status": status}, limit=limit)
        return [Message.from_inbox(row) for row in rows]
