"""How the command shows things to a person: tables, live progress bars, sizes. (--json bypasses this.)"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from castray_client.models import Cast, FileInfo, Group, Message, Node, Target, plain

# Tables and results on stdout; progress bars and errors on stderr, so `castray ... > file` keeps
# only what was asked for.
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

STATUS_STYLE = {
    "online": "green",
    "completed": "green",
    "skipped": "green",
    "delivered": "green",
    "running": "cyan",
    "receiving": "cyan",
    "verifying": "cyan",
    "queued": "yellow",
    "pending": "yellow",
    "partial": "red",
    "failed": "red",
    "cancelled": "magenta",
    "offline": "red",
}


def human(size: int | float | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def cap(value: int | None) -> str:
    return f"{human(value)}/s" if value else "unlimited"


def styled(status: str) -> str:
    style = STATUS_STYLE.get(status)
    return f"[{style}]{status}[/]" if style else status


def nodes_table(nodes: list[Node]) -> Table:
    table = Table("node", "status", "address", "egress cap", "ingress cap", "max casts", "ray node", "groups")
    for n in nodes:
        status = styled(n.status) + ("" if n.enabled else " (disabled)")
        if n.status_detail and not n.online:
            status += f"\n[dim]{escape(n.status_detail)}[/]"
        address = f"{n.address}:{n.listen_port}" if n.address and n.listen_port else n.address or "-"
        table.add_row(
            escape(n.name),
            status,
            address,
            cap(n.egress_cap),
            cap(n.ingress_cap),
            str(n.max_concurrent or "default"),
            n.ray_node_id[:12] or "-",
            ", ".join(n.groups) or "-",
        )
    return table


def groups_table(groups: list[Group]) -> Table:
    table = Table("group", "members", "description")
    for g in groups:
        table.add_row(escape(g.name), escape(", ".join(g.nodes)) or "-", escape(g.description or ""))
    return table


def cast_line(cast: Cast) -> str:
    targets = ", ".join(t.node for t in cast.targets) or "-"
    dest = f" as {cast.dest_name}" if cast.dest_name and cast.dest_name != cast.file_name else ""
    size = f"{human(cast.size)}, " if cast.size is not None else ""
    line = f"cast #{cast.id} {cast.source}:{cast.file_name}{dest} ({size}{cast.mode}) → {targets}: "
    return escape(line) + styled(cast.status)


def targets_table(cast: Cast) -> Table:
    table = Table("target", "status", "received", "from", "error")
    for t in cast.targets:
        table.add_row(
            escape(t.node), styled(t.status), human(t.bytes_received or t.bytes_done), t.parent or "-", escape(t.error)
        )
    return table


def outcome(cast: Cast) -> str:
    ready = len(cast.ready_targets)
    line = f"cast #{cast.id} {styled(cast.status)}: {ready}/{len(cast.targets)} targets hold the file"
    if cast.duration is not None:
        line += f" in {cast.duration:.1f} s"
        if cast.size and cast.duration > 0:
            line += f" ({human(cast.size / cast.duration)}/s)"
    if cast.sha256:
        line += f", sha256 {cast.sha256[:16]}…"
    if cast.error and not any(t.error for t in cast.targets):
        # A partial cast's error repeats its targets' reasons, which are printed one per line.
        line += f"\n[red]{escape(cast.error)}[/]"
    return line


def history_table(casts: list[Cast]) -> Table:
    table = Table("id", "created", "source", "targets", "mode", "size", "status", "duration")
    for c in casts:
        table.add_row(
            str(c.id),
            c.created_at[:19].replace("T", " "),
            escape(f"{c.source}:{c.file_name}"),
            escape(", ".join(t.node for t in c.targets) or (f"group:{c.group}" if c.group else "-")),
            c.mode,
            human(c.size),
            styled(c.status),
            f"{c.duration:.1f} s" if c.duration is not None else "-",
        )
    return table


def files_table(files: list[FileInfo]) -> Table:
    table = Table("name", "size", "modified", "sha256")
    for f in files:
        name = escape(f.name) + (" [yellow](receiving)[/]" if f.partial else "")
        table.add_row(name, human(f.size), f.modified[:19].replace("T", " "), (f.sha256 or "-")[:16])
    return table


def inbox_table(messages: list[Message]) -> Table:
    table = Table("message", "from", "type", "sent", "status", "content")
    for m in messages:
        content = m.content if len(m.content) <= 60 else m.content[:57] + "..."
        sent = m.created_at[:19].replace("T", " ")
        table.add_row(str(m.id), escape(m.sender), m.message_type, sent, styled(m.status), escape(content))
    return table


def transfer_bar(console: Console = err) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


class RateColumn(ProgressColumn):
    """The server's rate once a target is done (a bar that jumps to 100% fools rich's estimate),
    rich's own estimate while it receives."""

    def render(self, task: Task) -> Text:
        rate = task.fields.get("rate")
        if rate is None:
            rate = task.speed
        return Text(f"{human(rate)}/s" if rate else "", style="progress.data.speed")


def _shown_rate(target: Target) -> float | None:
    # The server's rate is the whole receive's only for a completed target; a failed or
    # cancelled one shows none, a receiving one rich's estimate (None).
    if target.status == "completed":
        return target.rate or 0.0
    return 0.0 if target.final else None


class CastBars:
    """One progress bar per target of a cast, fed with each state the watcher yields."""

    def __init__(self, console: Console = err) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            RateColumn(),
            TextColumn("{task.fields[state]}"),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> CastBars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, cast: Cast) -> None:
        width = max((len(t.node) for t in cast.targets), default=4)
        for t in cast.targets:
            done = cast.size if t.status == "skipped" and cast.size else t.bytes_done
            # Reasons are printed under the bars: here they would squeeze the bar to nothing.
            fields: dict[str, Any] = {"state": styled(t.status), "rate": _shown_rate(t)}
            if t.node not in self.tasks:
                self.tasks[t.node] = self.progress.add_task(escape(t.node.ljust(width)), total=cast.size, **fields)
            self.progress.update(self.tasks[t.node], completed=done, total=cast.size, **fields)


def rows(items: list[Any]) -> list[Any]:
    return [plain(item) for item in items]
