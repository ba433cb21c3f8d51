"""The `castray` command.

Exit codes: 0 done; 1 the server refused or the operation failed (a cast that ended partial,
failed or cancelled, a download that did not verify); 2 a usage error (bad arguments, no server
configured, a source the server cannot cast from); 3 a wait that timed out (the cast goes on);
130 interrupted.
"""

import functools
import hashlib
import json
import re
import sys
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from castray_client import __version__, config, display
from castray_client.client import CastRayError, Client, WaitTimeout, target_choice
from castray_client.display import err, out
from castray_client.models import Cast, plain

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_INTERRUPTED = 130
URL_SOURCE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

app = typer.Typer(
    help="Cast files and messages across the nodes of a CastRay cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Mode(str, Enum):
    tcp = "tcp"
    udp = "udp"
    object_store = "object_store"


# Options every command takes, so they can come after the command name as well as before it.
UrlOpt = Annotated[
    str | None, typer.Option("--url", help="CastRay server, e.g. http://host:8000 (default: CASTRAY_URL, then login)")
]
TokenOpt = Annotated[str | None, typer.Option("--token", help="API token (default: CASTRAY_TOKEN, then login)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables and bars.")]
ToOpt = Annotated[str, typer.Option("--to", help="all, group:NAME, or node names separated by commas.")]


def print_json(data: Any) -> None:
    # Plain print, not rich: JSON must not be wrapped, highlighted or marked up.
    print(json.dumps(plain(data), indent=2, default=str))


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    err.print("[red]error:[/] " + escape(message), soft_wrap=True)
    return typer.Exit(code)


F = TypeVar("F", bound=Callable[..., Any])


def handled(func: F) -> F:
    """Turn the client's errors into a message and the exit codes above."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except WaitTimeout as exc:
            raise fail(str(exc), EXIT_TIMEOUT) from None
        except CastRayError as exc:
            raise fail(str(exc)) from None
        except config.ConfigError as exc:
            raise fail(str(exc), EXIT_USAGE) from None
        except KeyboardInterrupt:
            raise fail("interrupted", EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def connect(ctx: typer.Context, url: str | None, token: str | None) -> Client:
    given = ctx.obj or {}
    settings = config.resolve(url or given.get("url"), token or given.get("token"))
    return Client(settings.url, settings.token)


def usage(message: str, param: str | None = None) -> typer.BadParameter:
    return typer.BadParameter(message, param_hint=param)


def version_callback(value: bool) -> None:
    if value:
        print(f"castray {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    url: UrlOpt = None,
    token: TokenOpt = None,
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    ctx.obj = {"url": url, "token": token}


# --- login -------------------------------------------------------------------------------
@app.command()
@handled
def login(
    url: Annotated[str, typer.Argument(help="The server, e.g. http://castray:8000")],
    user: Annotated[str | None, typer.Option("--user", "-u", help="User name (default: asked)")] = None,
    password: Annotated[
        str | None, typer.Option("--password", envvar="CASTRAY_PASSWORD", help="Password (default: asked)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Get an API token with a user and password and keep it (file mode 0600) for later commands."""
    url = config.normalise(url)
    user = user or typer.prompt("User")
    password = password if password is not None else typer.prompt("Password", hide_input=True)
    token = Client.login(url, user, password)
    path = config.remember(url, token, user)
    if as_json:
        print_json({"url": url, "user": user, "config": str(path)})
    else:
        out.print(f"Logged in to {url} as {user}; the token is kept in {path} (mode 0600).")


@app.command()
@handled
def logout(
    url: Annotated[str | None, typer.Argument(help="The server to forget (default: the default one)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Forget the token kept for a server (it stays valid on the server until an operator revokes it)."""
    dropped = config.forget(url)
    if as_json:
        print_json({"logged_out": dropped})
    elif dropped:
        out.print(f"Forgot the token for {dropped}.")
    else:
        out.print("No token was kept for that server.")


# --- nodes and groups ----------------------------------------------------------------------
@app.command()
@handled
def nodes(ctx: typer.Context, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List the nodes: status, address, bandwidth caps, Ray node."""
    with connect(ctx, url, token) as client:
        found = client.nodes()
    if as_json:
        print_json(found)
    else:
        out.print(display.nodes_table(found))


@app.command()
@handled
def groups(ctx: typer.Context, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List the node groups and their members."""
    with connect(ctx, url, token) as client:
        found = client.groups()
    if as_json:
        print_json(found)
    else:
        out.print(display.groups_table(found))


# --- casting -------------------------------------------------------------------------------
def follow(cast: Cast, *, timeout: float | None, min_ready: int | None, as_json: bool) -> int:
    """Watch a cast to its end (or to `min_ready` verified targets); the exit code it earned."""
    current = cast
    try:
        if as_json:
            for current in cast.watch(timeout=timeout):
                if min_ready is not None and len(current.ready_targets) >= min_ready:
                    break
        else:
            out.print(display.cast_line(cast))
            with display.CastBars() as bars:
                for current in cast.watch(timeout=timeout):
                    bars.update(current)
                    if min_ready is not None and len(current.ready_targets) >= min_ready:
                        break
    except WaitTimeout as exc:
        if as_json:
            print_json(current.summary())
        raise fail(str(exc), EXIT_TIMEOUT) from None
    if as_json:
        print_json(current.summary())
    else:
        out.print(display.outcome(current))
        for t in current.targets:
            if t.status in ("failed", "cancelled"):
                out.print(f"  {escape(t.node)}: {display.styled(t.status)}: {escape(t.error or 'no reason given')}")
        if not current.final:
            still = [t.node for t in current.targets if not t.final]
            out.print(f"{len(current.ready_targets)} target(s) ready; still going on: {', '.join(still)}")
    if min_ready is not None and len(current.ready_targets) >= min_ready:
        return 0
    return 0 if current.status == "completed" else EXIT_FAILED


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
                    raise fail(
                        f"this server cannot cast from a URL (it has no origin support yet); it answered: {exc}",
                        EXIT_USAGE,
                    ) from None
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
            started = client.cast(node, path, dest_name=dest or "", **options)
        else:
            raise usage("give NODE:PATH, an existing local file, or a URL (https://, s3://)", "'SOURCE'")
        if not wait:
            if as_json:
                print_json(started.summary())
            else:
                out.print(display.cast_line(started))
            return
        code = follow(started, timeout=timeout, min_ready=min_ready, as_json=as_json)
    raise typer.Exit(code)


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
                raise typer.Exit(follow(found, timeout=timeout, min_ready=None, as_json=as_json))
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
            raise typer.Exit(follow(again, timeout=timeout, min_ready=None, as_json=as_json))
    if as_json:
        print_json(again.summary())
    else:
        out.print(display.cast_line(again))


# --- files ---------------------------------------------------------------------------------
@app.command("ls")
@handled
def list_files(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="The node.")],
    path: Annotated[str, typer.Argument(help="A file or directory in its storage (default: all).")] = "",
    hash_: Annotated[bool, typer.Option("--hash", help="Compute SHA-256s not known yet (slow).")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the files in a node's storage."""
    with connect(ctx, url, token) as client:
        found = client.files(node, path, compute_sha256=hash_)
    if path and not found:
        raise fail(f"nothing at {path} in {node}'s storage")
    if as_json:
        print_json(found)
    else:
        out.print(display.files_table(found))


@app.command()
@handled
def put(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="The node.")],
    local: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The local file.")],
    name: Annotated[str | None, typer.Argument(help="Its path in the node's storage (default: its name).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a file of the same name.")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Upload a file into a node's storage (streamed, with a progress bar)."""
    with connect(ctx, url, token) as client:
        if as_json:
            info = client.upload(node, local, name, overwrite=overwrite)
        else:
            with display.transfer_bar() as bar:
                task = bar.add_task(f"{local.name} → {node}", total=local.stat().st_size)
                info = client.upload(node, local, name, overwrite=overwrite, progress=lambda n: bar.advance(task, n))
    if as_json:
        print_json(info)
    else:
        out.print(f"{node}:{info.name} {display.human(info.size)} sha256 {info.sha256 or '-'}")


@app.command()
@handled
def get(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="The node.")],
    path: Annotated[str, typer.Argument(help="The file in its storage.")],
    local: Annotated[Path | None, typer.Argument(help="Where to write it (a file or a directory) (default: .)")] = None,
    resume: Annotated[bool, typer.Option(help="Resume from LOCAL.part when it exists.")] = True,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Download a file (resuming a partial one with HTTP Range; checked against its SHA-256)."""
    with connect(ctx, url, token) as client:
        if as_json:
            result = client.download(node, path, local, resume=resume)
        else:
            with display.transfer_bar() as bar:
                task = bar.add_task(f"{node}:{path}", total=None)

                def progress(done: int, total: int | None) -> None:
                    bar.update(task, completed=done, total=total)

                try:
                    result = client.download(node, path, local, resume=resume, progress=progress)
                except KeyboardInterrupt:
                    bar.stop()
                    err.print("interrupted; the .part file keeps the bytes so far: run the command again to resume")
                    raise
    if as_json:
        print_json(result)
        return
    check = "verified against the server's SHA-256" if result.verified else "not verified (no SHA-256 on the server)"
    resumed = f", resumed at {display.human(result.resumed_from)}" if result.resumed_from else ""
    out.print(f"{result.path} {display.human(result.size)} sha256 {result.sha256} {check}{resumed}")


@app.command()
@handled
def rm(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="The node.")],
    path: Annotated[str, typer.Argument(help="The file in its storage.")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a file from a node's storage (staff)."""
    with connect(ctx, url, token) as client:
        client.delete(node, path)
    if as_json:
        print_json({"deleted": f"{node}:{path}"})
    else:
        out.print(f"Deleted {node}:{path}")


# --- messages ------------------------------------------------------------------------------
@app.command()
@handled
def send(
    ctx: typer.Context,
    to: ToOpt,
    text: Annotated[str | None, typer.Argument(help="The message text.")] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json-file", exists=True, dir_okay=False, help="Send this JSON instead of text.")
    ] = None,
    sender: Annotated[str | None, typer.Option("--from", help="Sending node (default: first online node).")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a text (or JSON) message to nodes' inboxes."""
    try:
        target_choice(to)
    except ValueError as exc:
        raise usage(str(exc), "'--to'") from None
    if (text is None) == (json_file is None):
        raise usage("give either TEXT or --json-file", "'TEXT'")
    kind = "text"
    content = text or ""
    if json_file is not None:
        content = json_file.read_text()
        try:
            json.loads(content)
        except ValueError as exc:
            raise usage(f"{json_file} is not JSON: {exc}", "'--json-file'") from None
        kind = "json"
    with connect(ctx, url, token) as client:
        node = sender or client.first_online_node().name
        message = client.send(content, sender=node, to=to, message_type=kind)
    if as_json:
        print_json(message)
    else:
        out.print(f"message #{message.id} from {node} to {len(message.deliveries)} node(s): {message.status}")


@app.command()
@handled
def inbox(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="The node.")],
    status_: Annotated[str | None, typer.Option("--status", help="pending, delivered or failed.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Messages cast to a node, newest first."""
    with connect(ctx, url, token) as client:
        found = client.inbox(node, status=status_, limit=limit)
    if as_json:
        print_json(found)
    else:
        out.print(display.inbox_table(found))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
