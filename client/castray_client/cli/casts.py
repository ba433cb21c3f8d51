"""Casts: `cast`, `status`, `history`, `cancel`, `retry`."""

import hashlib
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from castray_client import display
from castray_client.cli.common import (
    EXIT_FAILED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    URL_SOURCE,
    JsonOpt,
    Mode,
    TokenOpt,
    ToOpt,
    UrlOpt,
    app,
    connect,
    fail,
    handled,
    print_json,
    usage,
)
from castray_client.client import CastRayError, Client, WaitTimeout, target_choice
from castray_client.display import out
from castray_client.models import Cast, plain


# --- casting -------------------------------------------------------------------------------
class _Stopped(Exception):
    """A wait ran out of time; carries the last state seen."""

    def __init__(self, last: Cast, error: WaitTimeout) -> None:
        super().__init__(str(error))
        self.last = last
        self.error = error


def _watch(cast: Cast, *, timeout: float | None, min_ready: int | None, bars: display.CastBars | None) -> Cast:
    current = cast
    try:
        for current in cast.watch(timeout=timeout):
            if bars is not None:
                bars.update(current)
            if min_ready is not None and len(current.ready_targets) >= min_ready:
                break
    except WaitTimeout as exc:
        raise _Stopped(current, exc) from None
    return current


def _report(cast: Cast) -> None:
    out.print(display.outcome(cast))
    for t in cast.targets:
        if t.status in ("failed", "cancelled"):
            out.print(f"  {escape(t.node)}: {display.styled(t.status)}: {escape(t.error or 'no reason given')}")
    if not cast.final:
        still = [t.node for t in cast.targets if not t.final]
        out.print(f"{len(cast.ready_targets)} target(s) ready; still going on: {', '.join(still)}")


def combined(casts: list[Cast]) -> dict[str, Any]:
    """One cast's summary; for several casts the same keys over all, plus each."""
    if len(casts) == 1:
        return casts[0].summary()
    # Per target node over all the files: bytes added up, the worst state, every reason.
    received: dict[str, int] = {}
    states: dict[str, set[str]] = {}
    reasons: dict[str, list[str]] = {}
    for cast in casts:
        for t in cast.targets:
            received[t.node] = received.get(t.node, 0) + t.bytes_received
            states.setdefault(t.node, set()).add(t.status)
            reasons.setdefault(t.node, []).extend([f"{cast.file_name}: {t.error}"] if t.error else [])
    targets = []
    for node, seen in states.items():
        worst = next((s for s in ("failed", "cancelled", "receiving", "verifying", "pending") if s in seen), "")
        worst = worst or ("skipped" if seen == {"skipped"} else "completed")
        targets.append(
            {"node": node, "status": worst, "bytes_received": received[node], "error": "; ".join(reasons[node])}
        )
    statuses = {c.status for c in casts}
    if statuses == {"completed"}:
        status = "completed"
    elif not all(c.final for c in casts):
        status = "running"
    elif statuses <= {"failed", "cancelled"}:
        status = "failed" if "failed" in statuses else "cancelled"
    else:
        status = "partial"
    durations = [c.duration for c in casts if c.duration is not None]
    return {
        "id": [c.id for c in casts],
        "status": status,
        "size": sum(c.size or 0 for c in casts),
        "sha256": "",
        "duration_s": sum(durations) if durations else None,
        "targets": targets,
        "casts": [c.summary() | {"file_name": c.file_name} for c in casts],
    }


def follow(casts: list[Cast], *, timeout: float | None, min_ready: int | None, as_json: bool) -> int:
    """Watch casts to their end (or to `min_ready` verified targets each); the exit code earned."""
    deadline = None if timeout is None else time.monotonic() + timeout
    seen: list[Cast] = []
    stopped: _Stopped | None = None
    for cast in casts:
        if stopped is not None:
            seen.append(cast)  # out of time: as it was when it was queued
            continue
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            if as_json:
                current = _watch(cast, timeout=left, min_ready=min_ready, bars=None)
            else:
                out.print(display.cast_line(cast))
                with display.CastBars() as bars:
                    current = _watch(cast, timeout=left, min_ready=min_ready, bars=bars)
        except _Stopped as exc:
            current, stopped = exc.last, exc
        seen.append(current)
        if not as_json:
            _report(current)
    if as_json:
        print_json(combined(seen))
    if stopped is not None:
        raise fail(str(stopped.error), EXIT_TIMEOUT)
    if min_ready is not None and all(len(c.ready_targets) >= min_ready for c in seen):
        return 0
    return 0 if all(c.status == "completed" for c in seen) else EXIT_FAILED


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _upload_source(client: Client, local: Path, via: str, name: str, as_json: bool) -> None:
    """Put a local file into `via`'s storage as `name`; reuse a copy already there with the same bytes."""
    existing = client.file_info(via, name)
    if existing is not None:
        if existing.sha256 and existing.sha256 == _sha256_of(local):
            return
        raise CastRayError(
            f"{via} already holds {name} with other content; remove it (castray rm {via} {name}) "
            "or choose another name with --dest"
        )
    if as_json:
        client.upload(via, local, name)
        return
    with display.transfer_bar() as bar:
        task = bar.add_task(f"upload to {via}", total=local.stat().st_size)
        client.upload(via, local, name, progress=lambda n: bar.advance(task, n))


@app.command()
@handled
def cast(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="NODE:PATH in a node's storage, a local file, or a URL.")],
    to: ToOpt,
    mode: Annotated[Mode, typer.Option(help="How the bytes move.")] = Mode.tcp,
    fan_out: Annotated[
        int, typer.Option("--fan-out", min=0, max=64, help="Children per relay in the tree; 0: the server's default.")
    ] = 0,
    priority: Annotated[int, typer.Option(min=-1000, max=1000, help="Higher starts first.")] = 0,
    dest: Annotated[str | None, typer.Option(help="Name at the targets (default: the source's name).")] = None,
    via: Annotated[
        str | None, typer.Option(help="Node that takes a local file or URL first (default: first online node).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the cast live until it ends.")] = False,
    min_ready: Annotated[
        int | None, typer.Option("--min-ready", min=1, help="With --wait: return once K targets hold the file.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="With --wait: give up waiting after S seconds (exit 3).")
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cast a file to nodes: `castray cast node_1:data/model.bin --to all --wait`."""
    try:
        target_choice(to)
    except ValueError as exc:
        raise usage(str(exc), "'--to'") from None
    wait = wait or min_ready is not None or timeout is not None
    options = {"to": to, "mode": mode.value, "fan_out": fan_out, "priority": priority}
    with connect(ctx, url, token) as client:
        if URL_SOURCE.match(source):
            node = via or client.first_online_node().name
            try:
                started = client.cast_url(source, via=node, dest_name=dest or "", **options)
            except CastRayError as exc:
                if exc.status is not None and 400 <= exc.status < 500 and exc.status not in (401, 403):
                    raise fail(f"the server refused to cast from {source}: {exc}", EXIT_USAGE) from None
                raise
        elif Path(source).exists():
            local = Path(source)
            if not local.is_file():
                raise usage(f"{source} is a directory; put its files on a node first, then cast them", "'SOURCE'")
            node = via or client.first_online_node().name
            name = dest or local.name
            _upload_source(client, local, node, name, as_json)
            started = client.cast(node, name, **options)
        elif ":" in source and all(source.partition(":")[::2]):
            node, _, path = source.partition(":")
            started = _cast_from_node(client, node, path, dest, options)
        else:
            raise usage("give NODE:PATH, an existing local file, or a URL (https://, s3://)", "'SOURCE'")
        casts = started if isinstance(started, list) else [started]
        if not wait:
            if as_json:
                print_json(combined(casts))
            else:
                for one in casts:
                    out.print(display.cast_line(one))
            return
        code = follow(casts, timeout=timeout, min_ready=min_ready, as_json=as_json)
    raise typer.Exit(code)


def _cast_from_node(client: Client, node: str, path: str, dest: str | None, options: dict[str, Any]) -> Cast:
    """Cast a file, or a whole directory, from a node's storage.

    The server casts a directory itself, as one cast (`is_directory`, `files` counted): the
    targets switch to the new version of the directory in one step.
    """
    return client.cast(node, path, dest_name=dest or "", **options)


@app.command()
@handled
def status(
    ctx: typer.Context,
    cast_id: Annotated[int | None, typer.Argument(metavar="[ID]", help="A cast; without it, the cluster.")] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Follow live (a cast: until it ends).")] = False,
    timeout: Annotated[float | None, typer.Option(min=0, help="With --watch: stop after S seconds (exit 3).")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The cluster (nodes, active casts), or one cast with its targets."""
    with connect(ctx, url, token) as client:
        if cast_id is not None:
            found = client.get_cast(cast_id)
            if watch:
                raise typer.Exit(follow([found], timeout=timeout, min_ready=None, as_json=as_json))
            if as_json:
                print_json(found.summary() | {"cast": plain(found)})
            else:
                out.print(display.cast_line(found))
                out.print(display.targets_table(found))
                out.print(display.outcome(found))
            return
        if not watch or as_json:
            snapshot = _cluster(client)
            if as_json:
                print_json(snapshot)
            else:
                out.print(_cluster_view(snapshot))
            return
        started = time.monotonic()
        with Live(_cluster_view(_cluster(client)), console=out, refresh_per_second=2) as live:
            while timeout is None or time.monotonic() - started < timeout:
                time.sleep(2)
                live.update(_cluster_view(_cluster(client)))
        raise typer.Exit(EXIT_TIMEOUT)


def _cluster(client: Client) -> dict[str, Any]:
    active = [c for s in ("running", "queued") for c in client.casts(status=s, limit=100)]
    return {"clusters": client.clusters(), "nodes": client.nodes(), "active_casts": active}


def _cluster_view(snapshot: dict[str, Any]) -> Table:
    grid = Table.grid(padding=(1, 0))
    for cluster in snapshot["clusters"]:
        alive = sum(1 for n in cluster.get("ray_nodes") or [] if n.get("alive"))
        line = (
            f"Ray cluster [bold]{cluster.get('name') or cluster.get('address')}[/]: {display.styled(cluster['status'])}"
            f", Ray {cluster.get('ray_version') or '?'}, {alive} live Ray node(s)"
        )
        if cluster.get("last_error"):
            line += f"\n[red]{escape(cluster['last_error'])}[/]"
        grid.add_row(line)
    grid.add_row(display.nodes_table(snapshot["nodes"]))
    casts = snapshot["active_casts"]
    grid.add_row(display.history_table(casts) if casts else "No cast is queued or running.")
    return grid


@app.command()
@handled
def history(
    ctx: typer.Context,
    status_: Annotated[str | None, typer.Option("--status", help="queued, running, completed, partial...")] = None,
    mode: Annotated[Mode | None, typer.Option(help="tcp, udp or object_store.")] = None,
    cast_type: Annotated[str | None, typer.Option("--type", help="unicast, multicast or broadcast.")] = None,
    source: Annotated[str | None, typer.Option(help="Source node.")] = None,
    target: Annotated[str | None, typer.Option(help="A target node.")] = None,
    group: Annotated[str | None, typer.Option(help="Cast to this group.")] = None,
    user: Annotated[str | None, typer.Option(help="Requested by this user.")] = None,
    since: Annotated[str | None, typer.Option(help="Created at or after (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Created before (ISO 8601).")] = None,
    search: Annotated[str | None, typer.Option(help="Text in file names.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Past and current casts, newest first, filtered like the API."""
    filters = {
        "status": status_,
        "mode": mode.value if mode else None,
        "cast_type": cast_type,
        "source": source,
        "target": target,
        "group": group,
        "requested_by": user,
        "created_after": since,
        "created_before": until,
        "search": search,
    }
    with connect(ctx, url, token) as client:
        found = client.casts(limit=limit, **{k: v for k, v in filters.items() if v})
    if as_json:
        print_json([c.summary() | {"cast": plain(c)} for c in found])
    else:
        out.print(display.history_table(found))


@app.command()
@handled
def cancel(
    ctx: typer.Context,
    cast_id: Annotated[int, typer.Argument(metavar="ID")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a queued or running cast."""
    with connect(ctx, url, token) as client:
        done = client.cancel(cast_id)
    if as_json:
        print_json(done.summary())
    else:
        out.print(display.cast_line(done))


@app.command()
@handled
def retry(
    ctx: typer.Context,
    cast_id: Annotated[int, typer.Argument(metavar="ID")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the new cast until it ends.")] = False,
    timeout: Annotated[float | None, typer.Option(min=0, help="With --wait: stop after S seconds (exit 3).")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cast a finished cast's file to the same nodes again, as a new cast."""
    with connect(ctx, url, token) as client:
        again = client.retry(cast_id)
        if wait:
            raise typer.Exit(follow([again], timeout=timeout, min_ready=None, as_json=as_json))
    if as_json:
        print_json(again.summary())
    else:
        out.print(display.cast_line(again))
