"""The README's first cast, run as written against a real server; the links of the docs resolve.

The first-cast commands are the first ```sh block under "## Your first cast". The test runs
that block with bash and curl against `manage.py castray_up` (a real process, its worker
inside, attached to the test session's Ray). Only the two variables at its top change: `URL`
points at the test's server, and `TOKEN` comes from the same `drf_create_token` command run
against the test's data directory.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import sha256_of
from tests.servers import RunningServer, castray_up

BASE_DIR = Path(__file__).resolve().parent.parent
README = BASE_DIR / "README.md"
URL_LINE = "URL=http://127.0.0.1:8000"
TOKEN_LINE = "TOKEN=$(.venv/bin/python manage.py drf_create_token admin | awk '{print $3}')"
FILE = "first/hello.bin"
# Notes kept beside the checkout, which a clone does not have (spelt so that grep finds no link).
OUTSIDE = "../" + "shared"


def first_cast_block() -> str:
    section = README.read_text().split("\n## Your first cast\n", 1)
    assert len(section) == 2, "the README has no '## Your first cast' section"
    blocks = re.findall(r"^```sh\n(.*?)^```$", section[1], re.S | re.M)
    assert blocks, "the first-cast section has no ```sh block"
    return blocks[0]


def json_documents(text: str) -> list[Any]:
    """The JSON bodies curl printed one after another (curl adds no newline between them)."""
    decoder = json.JSONDecoder()
    found: list[Any] = []
    at = 0
    while text[at:].strip():
        at += len(text[at:]) - len(text[at:].lstrip())
        document, at = decoder.raw_decode(text, at)
        found.append(document)
    return found


def token_for_admin(server: RunningServer) -> str:
    # The README's TOKEN line, run against this server's database: `awk '{print $3}'` of
    # "Generated token <key> for user admin".
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env["CASTRAY_DATA_DIR"] = str(server.data_dir)
    out = subprocess.run(
        [sys.executable, "manage.py", "drf_create_token", "admin"],
        cwd=BASE_DIR,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()[2]


def run_first_cast(server: RunningServer, token: str) -> list[Any]:
    lines = first_cast_block().splitlines()
    assert lines[:2] == [URL_LINE, TOKEN_LINE], "the block must start by setting URL and TOKEN as the test expects"
    script = "\n".join([f"URL={server.url}", f"TOKEN={token}", *lines[2:]])
    env = dict(os.environ)
    # `python3` in the block is any Python 3; the test's own is at hand.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(["bash", "-c", script], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, (done.stdout, done.stderr, server.log.read_text())
    return json_documents(done.stdout)


def wait_until_finished(server: RunningServer, transfer_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        status, body = server.call("GET", f"/api/v1/transfers/{transfer_id}/")
        assert status == 200, body
        if body["status"] not in ("queued", "running"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.3)


def states(transfer: dict[str, Any]) -> dict[str, str]:
    return {r["node"]: r["status"] for r in transfer["recipients"]}


@pytest.mark.ray
def test_the_first_cast_runs_as_written_and_the_bytes_arrive(ray_session, tmp_path: Path) -> None:
    with castray_up(tmp_path) as server:
        server.token = token_for_admin(server)

        generated, transfer = run_first_cast(server, server.token)
        assert generated["transfer"] is None
        assert generated["file"]["name"] == FILE and generated["file"]["size"] == 64 * 1024 * 1024
        assert transfer["source"] == "node_1" and transfer["file_name"] == FILE
        assert {r["node"] for r in transfer["recipients"]} == {"node_2", "node_3"}

        finished = wait_until_finished(server, transfer["id"])
        assert finished["status"] == "completed", finished
        assert states(finished) == {"node_2": "completed", "node_3": "completed"}
        # A chain by default: node_1 -> node_2 -> node_3, as the README says.
        assert finished["tree"]["edges"] == [["node_1", "node_2"], ["node_2", "node_3"]]
        storage = server.data_dir / "storage"
        source_sha = sha256_of(storage / "node_1" / FILE)
        assert source_sha == generated["file"]["sha256"] == finished["sha256"]
        for node in ("node_2", "node_3"):
            copy = storage / node / FILE
            assert copy.stat().st_size == 64 * 1024 * 1024
            assert sha256_of(copy) == source_sha, node

        # Run again, as the README says: the file exists (409), and the targets already hold it.
        refused, again = run_first_cast(server, server.token)
        assert refused["success"] is False and "already exists" in refused["message"], refused
        assert again["id"] != transfer["id"]
        finished = wait_until_finished(server, again["id"])
        assert finished["status"] == "completed", finished
        assert states(finished) == {"node_2": "skipped", "node_3": "skipped"}


def _anchors(markdown: str) -> set[str]:
    # GitHub's heading slugs (lower case, punctuation dropped, spaces to hyphens) and explicit ids.
    slugs = {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", markdown, re.M)
    }
    return slugs | set(re.findall(r'<a id="([^"]+)"></a>', markdown))


def test_the_readme_and_docs_link_only_to_what_the_repository_holds() -> None:
    pages = [README, *sorted((BASE_DIR / "docs").glob("*.md"))]
    assert len(pages) > 1, "docs/ is missing"
    for page in pages:
        text = page.read_text()
        assert OUTSIDE not in text, page
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name} links to {target}, which does not exist"
            if anchor:
                assert anchor in _anchors(linked.read_text()), f"{page.name} links to {target}: no such anchor"


def test_nothing_in_the_repository_points_outside_it() -> None:
    # A clone has none of the notes kept beside the checkout: nothing may send readers there.
    tracked = subprocess.run(["git", "ls-files"], cwd=README.parent, capture_output=True, text=True, check=True)
    marker = "../" + "shared"
    offenders = [
        name
        for name in tracked.stdout.split()
        if name.endswith((".py", ".md", ".html", ".js", ".sh", ".toml", ".txt"))
        and marker in (README.parent / name).read_text(errors="replace")
    ]
    assert offenders == []
