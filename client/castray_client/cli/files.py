"""A node's storage: `ls`, `put`, `get`, `rm`."""

from pathlib import Path
from typing import Annotated

import typer

from castray_client import display
from castray_client.cli.common import (
    JsonOpt,
    TokenOpt,
    UrlOpt,
    app,
    connect,
    fail,
    handled,
    print_json,
)
from castray_client.display import err, out


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
