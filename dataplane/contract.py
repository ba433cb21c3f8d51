"""The typed messages between the bridge worker and the node actors.

The worker builds a `CastPlan` and calls `CastNode.cast(plan)`; the actor answers with a
`CastResult` holding one `TargetResult` per target of the tree. Heartbeats answer a `Ping`,
progress polls a table of `ProgressRow` keyed by target id. Ray pickles these dataclasses
between processes; between actors (the offer of the TCP protocol) a subtree travels as JSON,
through `Hop.to_wire` / `Hop.from_wire`. Like everything in this package it imports nothing
of Django, so the worker and the actors share one definition of each message.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

Mode = Literal["tcp", "udp", "object_store"]
TargetStatus = Literal["pending", "receiving", "verifying", "completed", "skipped", "failed", "cancelled"]
FINAL_STATUSES: frozenset[str] = frozenset({"completed", "skipped", "failed", "cancelled"})


@dataclass(frozen=True)
class Hop:
    """One target in a distribution tree: where to reach it and who it relays to."""

    target: int  # the Target row's id
    node: str
    address: str
    port: int
    children: tuple[Hop, ...] = ()

    def walk(self) -> Iterator[Hop]:
        """This hop and every hop below it, parents before children."""
        stack = [self]
        while stack:
            hop = stack.pop()
            yield hop
            stack.extend(reversed(hop.children))

    def to_wire(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "node": self.node,
            "address": self.address,
            "port": self.port,
            "children": [child.to_wire() for child in self.children],
        }

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Hop:
        """Rebuild a hop from an offer; raises ValueError on a malformed one."""
        try:
            return cls(
                target=int(raw["target"]),
                node=str(raw.get("node", raw["target"])),
                address=str(raw["address"]),
                port=int(raw["port"]),
                children=tuple(cls.from_wire(child) for child in raw.get("children") or ()),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed hop in a plan: {exc}") from None


def flatten(hops: Iterable[Hop]) -> list[Hop]:
    """Every hop of a forest, each parent before its children."""
    return [hop for root in hops for hop in root.walk()]


@dataclass(frozen=True)
class Caps:
    """A node's bandwidth caps in bytes/s; None is uncapped.

    `stamp` is when they were read: an actor runs several calls at once, so a heartbeat sent
    before a change can arrive after the one that carries it, and must not undo it.
    """

    egress: int | None = None
    ingress: int | None = None
    stamp: float = field(default_factory=time.time)


@dataclass(frozen=True)
class CastPlan:
    """What the source actor needs to run one round of a cast."""

    transfer: int
    name: str  # the file in the source's storage
    dest_name: str  # the name it gets at the targets
    chunk_size: int
    sha256: str  # as the worker learnt it; the source refuses a file that changed since
    children: tuple[Hop, ...]
    mode: Mode = "tcp"
    # object_store mode: each target's actor name (target id -> name) in `namespace`.
    actors: dict[int, str] = field(default_factory=dict)
    namespace: str = ""
    udp_rate: float = 0.0  # bytes/s per receiver; 0 is unpaced
    udp_drop_every: int = 0  # tests and benchmarks: skip every Nth datagram of the first pass
    mirror: bool = False  # directory casts: targets drop files the source does not have

    def targets(self) -> list[Hop]:
        return flatten(self.children)


@dataclass
class TargetResult:
    """How one target's part of a round ended."""

    status: TargetStatus
    error: str = ""
    bytes_received: int = 0
    sha256: str = ""
    udp_transport: str = ""  # udp mode: "unicast" (IP multicast is not attempted)
    udp_passes: int = 0
    # Directory casts: files in the version published, and those it already held (not sent).
    files: int = 0
    files_skipped: int = 0
    bytes_skipped: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ("", 0) or k == "status"}

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> TargetResult:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


Results = dict[int, TargetResult]


def results_to_wire(results: Results) -> dict[str, dict[str, Any]]:
    # JSON object keys are text; the target id goes back to int in results_from_wire.
    return {str(target): result.to_wire() for target, result in results.items()}


def results_from_wire(raw: Any) -> Results:
    if not isinstance(raw, dict):
        raise ValueError("results are not a JSON object")
    return {int(target): TargetResult.from_wire(row) for target, row in raw.items()}


def fail_subtree(hop: Hop, reason: str, status: TargetStatus = "failed") -> Results:
    """The same failure for a hop and everything below it."""
    return {h.target: TargetResult(status=status, error=reason) for h in hop.walk()}


@dataclass
class CastResult:
    """The source actor's answer to `cast`: one result per target of the round."""

    ok: bool
    error: str = ""
    size: int = 0
    sha256: str = ""
    results: Results = field(default_factory=dict)
    source_bytes: int = 0  # bytes the source sent for this transfer so far
    seconds: float = 0.0
    peak_rss_mib: float = 0.0


@dataclass
class ProgressRow:
    """What a receiving actor is doing for one target of one transfer."""

    status: TargetStatus = "pending"
    bytes_done: int = 0  # held, including chunks resumed from an earlier attempt
    bytes_received: int = 0  # arrived in this attempt
    size: int = 0
    started: float | None = None
    updated: float = 0.0
    finished: float | None = None
    error: str = ""
    sha256: str = ""
    files_done: int = 0  # directory casts: files verified or already held
    files_total: int = 0
    files_skipped: int = 0  # held already, so not sent
    bytes_skipped: int = 0
    # Abort answers only: the bytes of the chunks the part's record holds on disk, which a
    # retry will not ask for again (None: not asked, or no such record).
    bytes_on_disk: int | None = None


@dataclass(frozen=True)
class PartOf:
    """Which `.part` an abort asks about: the file a target was receiving, as its offer named it."""

    name: str
    size: int
    chunk_size: int
    sha256: str


@dataclass(frozen=True)
class FileInfo:
    name: str
    size: int
    sha256: str  # a directory: the digest of its manifest, which names the version
    kind: str = "file"  # or "directory"
    files: int = 0  # a directory: its regular files
    manifest: tuple[tuple[str, int, str], ...] = ()  # a directory: (path, size, sha256) of each file


@dataclass(frozen=True)
class Ping:
    """A node actor's heartbeat."""

    name: str
    address: str
    port: int
    ray_node_id: str
    pid: int
    storage_dir: str
    peak_rss_mib: float
    bytes_sent: int
    time: float
    rss_anon_mib: float = 0.0
    rss_shmem_mib: float = 0.0
    rss_file_mib: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class InboxMessage:
    """One message for one recipient's inbox (`id` is the Delivery row, `message` the Message)."""

    id: int
    message: int
    sender: str
    kind: str
    content: str
    created: str

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MessageBatch:
    """Messages from one sender to one node."""

    node: str
    address: str
    port: int
    messages: tuple[InboxMessage, ...]


@dataclass(frozen=True)
class OriginPolicy:
    """How a source actor may fetch a cast's origin URL (from the worker's settings)."""

    allow_private: bool = False  # loopback and private ranges; link-local and metadata never
    cache_bytes: int = 10 * 1024**3  # bound of the origin cache in the storage's .castray/
    timeout: float = 30.0  # seconds without an answer or a byte before giving up
    retries: int = 5  # resumes (HTTP Range) after a dropped connection
    s3_endpoint: str = ""  # an S3-compatible store; empty: AWS
