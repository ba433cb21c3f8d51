"""`castray login` / `logout` and who the server says you are, against the real server."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.client.helpers import castray, castray_json, cli_env, said

pytestmark = pytest.mark.ray


def test_login_keeps_the_token_readable_only_by_its_owner(server, tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    result = castray("login", server.url, "--user", "admin", "--password", server.admin_password, env=env)
    assert result.returncode == 0, result.stderr

    path = tmp_path / "config" / "castray" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    kept = json.loads(path.read_text())
    assert kept["default"] == server.url
    token = kept["servers"][server.url]["token"]
    assert len(token) == 40 and token not in result.stdout  # never printed

    # Later commands find the server and token in the file alone.
    code, nodes = castray_json("nodes", env=env)
    assert code == 0
    assert {"node_1", "node_2", "node_3", "edge-0", "edge-1"} <= {n["name"] for n in nodes}
    node_1 = next(n for n in nodes if n["name"] == "node_1")
    assert node_1["status"] == "online" and node_1["address"] and node_1["listen_port"]

    assert castray("logout", env=env).returncode == 0
    assert server.url not in json.loads(path.read_text())["servers"]
    result = castray("nodes", env=env)
    assert result.returncode == 2 and "castray login" in said(result.stderr)


def test_login_asks_for_user_and_password_when_not_given(server, tmp_path: Path) -> None:
    import subprocess

    from tests.client.helpers import CLI

    result = subprocess.run(
        [*CLI, "login", server.url],
        input=f"admin\n{server.admin_password}\n",
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "User" in result.stdout and "Password" in result.stdout
    assert server.admin_password not in result.stdout  # the password is not echoed
    assert (tmp_path / "config" / "castray" / "config.json").exists()


def test_a_wrong_password_prints_the_servers_answer(server, tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    result = castray("login", server.url, "--user", "admin", "--password", "not-the-password", env=env)
    assert result.returncode == 1
    assert "400" in said(result.stderr) and "Unable to log in with provided credentials" in said(result.stderr)
    assert not (tmp_path / "config" / "castray" / "config.json").exists()


def test_a_wrong_token_prints_the_servers_401_message(server, tmp_path: Path) -> None:
    env = cli_env(tmp_path, CASTRAY_URL=server.url, CASTRAY_TOKEN="0" * 40)
    result = castray("nodes", env=env)
    assert result.returncode == 1
    assert "401 Unauthorized: Invalid token." in said(result.stderr)

    # --url/--token options win over the environment.
    result = castray("nodes", "--url", server.url, "--token", server.token, "--json", env=env)
    assert result.returncode == 0, result.stderr


def test_an_unreachable_server_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    from tests.servers import free_port

    env = cli_env(tmp_path, CASTRAY_URL=f"http://127.0.0.1:{free_port()}", CASTRAY_TOKEN="x")
    result = castray("nodes", env=env, timeout=60)
    assert result.returncode == 1
    assert "cannot reach CastRay" in said(result.stderr) and "Traceback" not in said(result.stderr)
