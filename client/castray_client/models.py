"""What the API returns, as dataclasses: nodes, groups, casts and their targets, files, messages.

Each `from_api` reads the server's JSON and ignores fields it does not know, so a newer server
that adds fields does not break an older client.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import TYPE_CHECKING, Any

from castray_client.watch import watch_cast

if TYPE_CHECKING:
    from castray_client.client import Client

CAST_FINAL = ("completed", "partial", "failed", "cancelled")
TARGET_FINAL = ("completed", "skipped", "failed", "cancelled")
# A target in one of these holds the whole file, verified against its SHA-256.
TARGET_READY = ("completed", "skipped")


def plain(value: Any) -> Any:
    """A dataclass (and what it holds) as JSON-ready dicts and lists, without its Client."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value) if f.name != "client"}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


@dataclass
class Node:
    name: str
    status: str
    enabled: bool
    address: str = ""
    listen_port: int | None = None
    status_detail: str = ""
    ray_node_id: str = ""
    storage_dir: str = ""
    egress_cap: int | None = None
    ingress_cap: int | None = None
    max_concurrent: int | None = None
    groups: list[str] = field(default_factory=list)
    id: int = 0

    @property
    def online(self) -> bool:
        return self.enabled and self.status == "online"

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Node:
        return cls(
            id=data.get("id", 0),
            name=data["name"],
            status=data.get("status", ""),
            enabled=bool(data.get("enabled", True)),
            address=data.get("address") or "",
            listen_port=data.get("listen_port"),
            status_detail=data.get("status_detail") or "",
            ray_node_id=data.get("ray_node_id") or "",
            storage_dir=data.get("storage_dir") or "",
            egress_cap=data.get("egress_cap"),
            ingress_cap=data.get("ingress_cap"),
            max_concurrent=data.get("max_concurrent"),
            groups=list(data.get("groups") or []),
        )


@dataclass
class Group:
    name: str
    nodes: list[str]
    description: str = ""

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Group:
        return cls(name=data["name"], nodes=list(data.get("nodes") or []), description=data.get("description") or "")


@dataclass
class Target:
    """One recipient of a cast."""

    node: str
    status: str
    bytes_done: int = 0
    bytes_received: int = 0
    rate: float | None = None
    error: str = ""
    parent: str | None = None
    attempts: int = 0
    files_done: int | None = None
    files_skipped: int | None = None
    id: int = 0

    @property
    def ready(self) -> bool:
        return self.status in TARGET_READY

    @property
    def final(self) -> bool:
        return self.status in TARGET_FINAL

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Target:
        return cls(
            id=data.get("id", 0),
            node=data["node"],
            status=data.get("status", ""),
            bytes_done=int(data.get("bytes_done") or 0),
            bytes_received=int(data.get("bytes_received") or 0),
            rate=data.get("rate"),
            error=data.get("error") or "",
            parent=data.get("parent"),
            attempts=int(data.get("attempts") or 0),
            files_done=data.get("files_done"),
            files_skipped=data.get("files_skipped"),
        )


@dataclass
class Cast:
    """A cast (a transfer): one file, or one directory (`is_directory`, `files` of them), to targets.

    `wait()` and `watch()` follow it live; they need the `Client` it came from.
    """

    id: int
    status: str
    source: str = ""
    file_name: str = ""
    dest_name: str = ""
    origin: str = ""
    is_directory: bool = False
    files: int | None = None
    cast_type: str = ""
    mode: str = ""
    fan_out: int = 0
    priority: int = 0
    group: str | None = None
    size: int | None = None
    sha256: str = ""
    error: str = ""
    duration: float | None = None
    rate: float | None = None
    created_at: str = ""
    finished_at: str | None = None
    requested_by: str | None = None
    targets: list[Target] = field(default_factory=list)
    client: Client | None = field(default=None, repr=False, compare=False)

    @property
    def final(self) -> bool:
        return self.status in CAST_FINAL

    @property
    def ready_targets(self) -> list[Target]:
        return [t for t in self.targets if t.ready]

    @classmethod
    def from_api(cls, data: dict[str, Any], client: Client | None = None) -> Cast:
        return cls(
            id=data["id"],
            status=data.get("status", ""),
            source=data.get("source") or "",
            file_name=data.get("file_name") or "",
            dest_name=data.get("dest_name") or "",
            origin=data.get("origin") or "",
            is_directory=bool(data.get("is_directory", False)),
            files=data.get("files"),
            cast_type=data.get("cast_type") or "",
            mode=data.get("mode") or "",
            fan_out=int(data.get("fan_out") or 0),
            priority=int(data.get("priority") or 0),
            group=data.get("group"),
            size=data.get("size"),
            sha256=data.get("sha256") or "",
            error=data.get("error") or "",
            duration=data.get("duration"),
            rate=data.get("rate"),
            created_at=data.get("created_at") or "",
            finished_at=data.get("finished_at"),
            requested_by=data.get("requested_by"),
            targets=[Target.from_api(t) for t in data.get("recipients") or []],
            client=client,
        )

    def with_event(self, event: dict[str, Any]) -> Cast:
        """This cast updated by a live `transfer.update` event (which carries only progress)."""
        by_id = {t.id: t for t in self.targets}
        targets = []
        for row in event.get("targets") or []:
            old = by_id.get(row.get("id", -1))
            fresh = Target.from_api(row)
            if old is not None:
                # The event has no bytes_received, parent or attempts: keep what we knew.
                fresh = replace(
                    old,
                    status=fresh.status,
                    bytes_done=fresh.bytes_done,
                    rate=fresh.rate,
                    error=fresh.error,
                )
            targets.append(fresh)
        return replace(
            self,
            status=event.get("status", self.status),
            size=event.get("size", self.size),
            error=event.get("error", self.error) or "",
            targets=targets or self.targets,
        )

    def _client(self) -> Client:
        if self.client is None:
            raise RuntimeError("this Cast was made without a Client; get it with Client.cast() or Client.get_cast()")
        return self.client

    def refresh(self) -> Cast:
        return self._client().get_cast(self.id)

    def watch(self, *, timeout: float | None = None, poll_interval: float = 0.5) -> Iterator[Cast]:
        """Yield this cast each time its progress or state changes, until it reaches a final state.

        Follows `/ws/transfers/<id>`; where the socket cannot be opened it polls instead.
        Raises `WaitTimeout` after `timeout` seconds.
        """
        return watch_cast(self._client(), self, timeout=timeout, poll_interval=poll_interval)

    def wait(self, timeout: float | None = None, min_ready: int | None = None) -> Cast:
        """Return the cast once it is final, or once `min_ready` targets hold the verified file.

        The other targets go on receiving. Raises `WaitTimeout` (a `TimeoutError`) after `timeout`.
        """
        current = self
        if min_ready is not None and len(current.ready_targets) >= min_ready:
            return current
        for current in self.watch(timeout=timeout):
            if min_ready is not None and len(current.ready_targets) >= min_ready:
                return current
        return current

    def summary(self) -> dict[str, Any]:
        """The machine-readable outcome `castray cast --json` prints."""
        return {
            "id": self.id,
            "status": self.status,
            "size": self.size,
            "sha256": self.sha256,
            "duration_s": self.duration,
            "targets": [
                {"node": t.node, "status": t.status, "bytes_received": t.bytes_received, "error": t.error}
                for t in self.targets
            ],
        }


@dataclass
class FileInfo:
    name: str
    size: int
    modified: str = ""
    sha256: str | None = None
    partial: bool = False

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> FileInfo:
        return cls(
            name=data["name"],
            size=int(data.get("size") or 0),
            modified=data.get("modified") or "",
            sha256=data.get("sha256") or None,
            partial=bool(data.get("partial")),
        )


@dataclass
class Delivery:
    node: str
    status: str
    delivered_at: str | None = None
    error: str = ""

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Delivery:
        return cls(
            node=data["node"],
            status=data.get("status", ""),
            delivered_at=data.get("delivered_at"),
            error=data.get("error") or "",
        )


@dataclass
class Message:
    """A message: what was sent (with each recipient's delivery), or one held in a node's inbox."""

    id: int
    sender: str
    content: str
    message_type: str = "text"
    status: str = ""
    cast_type: str = ""
    error: str = ""
    created_at: str = ""
    delivered_at: str | None = None
    deliveries: list[Delivery] = field(default_factory=list)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Message:
        return cls(
            id=data["id"],
            sender=data.get("sender") or "",
            content=data.get("content") or "",
            message_type=data.get("message_type") or "text",
            status=data.get("status") or "",
            cast_type=data.get("cast_type") or "",
            error=data.get("error") or "",
            created_at=data.get("created_at") or "",
            delivered_at=data.get("delivered_at"),
            deliveries=[Delivery.from_api(d) for d in data.get("deliveries") or []],
        )

    @classmethod
    def from_inbox(cls, data: dict[str, Any]) -> Message:
        # An inbox row is a delivery: its message's id, sender and content, with this node's status.
        return cls(
            id=data["message"],
            sender=data.get("sender") or "",
            content=data.get("content") or "",
            message_type=data.get("message_type") or "text",
            status=data.get("status") or "",
            cast_type=data.get("cast_type") or "",
            error=data.get("error") or "",
            created_at=data.get("sent_at") or "",
            delivered_at=data.get("delivered_at"),
        )
