"""Production running: the example environment, `check --deploy`, daphne behind TLS, JSON logs,
the systemd units and the SLURM batch script (run here with stand-ins for srun and scontrol)."""

from __future__ import annotations

import configparser
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster_fixtures import BASE_DIR, kill_by_marker
from tests.servers import free_port

DEPLOY = BASE_DIR / "castray_site" / "deploy"
METRICS_TOKEN = secrets.token_urlsafe(32)


def example_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The environment an operator gets from castray.env.example, secrets filled in."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CASTRAY_", "DATABASE_URL", "REDIS_URL"))
    }
    for line in (DEPLOY / "castray.env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    env.update(
        {
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "CASTRAY_METRICS_TOKEN": METRICS_TOKEN,
            "CASTRAY_DATA_DIR": str(tmp_path / "data"),
            "CASTRAY_STORAGE_DIR": str(tmp_path / "data" / "storage"),
        }
    )
    env.update(overrides)
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_is_clean_with_the_production_settings(tmp_path: Path) -> None:
    result = manage(example_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_the_default_settings_are_not_production(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CASTRAY_"))}
    env["CASTRAY_DATA_DIR"] = str(tmp_path / "data")
    result = manage(env, "shell", "-c", "from django.conf import settings; print(settings.SECURE_SSL_REDIRECT)")
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr


@pytest.mark.parametrize(
    ("blank", "message"),
    [
        ("DJANGO_SECRET_KEY", "needs DJANGO_SECRET_KEY"),
        ("DJANGO_ALLOWED_HOSTS", "needs DJANGO_ALLOWED_HOSTS"),
        ("CASTRAY_METRICS_TOKEN", "needs CASTRAY_METRICS_TOKEN"),
    ],
)
def test_production_refuses_to_start_without_what_it_needs(tmp_path: Path, blank: str, message: str) -> None:
    result = manage(example_env(tmp_path, **{blank: ""}), "check")
    assert result.returncode != 0
    assert message in result.stderr


def test_production_without_metrics_needs_no_metrics_token(tmp_path: Path) -> None:
    result = manage(example_env(tmp_path, CASTRAY_METRICS_TOKEN="", CASTRAY_METRICS="off"), "check")
    assert result.returncode == 0, result.stderr


def test_logs_are_one_json_object_per_line(tmp_path: Path) -> None:
    env = example_env(tmp_path, CASTRAY_PRODUCTION="0", DATABASE_URL="", REDIS_URL="")
    code = "import logging; logging.getLogger('castray.test').warning('cast %s done', 7, extra={'node': 'n1'})"
    result = manage(env, "shell", "-c", code)
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert lines, result.stderr
    entry = lines[-1]
    assert entry["message"] == "cast 7 done" and entry["level"] == "WARNING"
    assert entry["logger"] == "castray.test" and entry["node"] == "n1" and "time" in entry


@pytest.fixture
def daphne(tmp_path: Path) -> Iterator[str]:
    """daphne serving castray_site.asgi:application with the production settings (SQLite here)."""
    env = example_env(tmp_path, DATABASE_URL="", REDIS_URL="", DJANGO_ALLOWED_HOSTS="castray.example.org,127.0.0.1")
    assert manage(env, "migrate", "--noinput").returncode == 0
    port = free_port()
    proc = subprocess.Popen(
        [str(BASE_DIR / ".venv" / "bin" / "daphne"), "--bind", "127.0.0.1", "--port", str(port), "--proxy-headers"]
        + ["castray_site.asgi:application"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                urllib.request.urlopen(url + "/health", timeout=2)
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, headers={"Host": "castray.example.org", **(headers or {})})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_daphne_serves_https_only_behind_the_proxy(daphne: str) -> None:
    # Plain HTTP from a browser is sent to HTTPS...
    status, headers, _ = fetch(daphne + "/api/status")
    assert status == 301 and headers["Location"] == "https://castray.example.org/api/status"
    # ...what the TLS proxy forwards is served, with HSTS...
    status, headers, body = fetch(daphne + "/api/cluster/external-info", {"X-Forwarded-Proto": "https"})
    assert status in (401, 403) and json.loads(body)["success"] is False
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    # ...and probes and Prometheus inside the network may use plain HTTP.
    status, _, body = fetch(daphne + "/health")
    assert status in (200, 503) and "live" in json.loads(body)
    status, _, body = fetch(daphne + "/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert status == 200 and b"castray_queue_depth" in body
    assert fetch(daphne + "/metrics")[0] == 401


def test_the_systemd_units_run_what_the_readme_says() -> None:
    units = {}
    for name in ("castray-web.service", "castray-worker@.service"):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string((DEPLOY / name).read_text())
        units[name] = parser
        assert parser["Service"]["EnvironmentFile"] == "/etc/castray/castray.env"
        assert parser["Install"]["WantedBy"] == "multi-user.target"
    assert "daphne" in units["castray-web.service"]["Service"]["ExecStart"]
    assert "castray_site.asgi:application" in units["castray-web.service"]["Service"]["ExecStart"]
    assert "manage.py castray_worker" in units["castray-worker@.service"]["Service"]["ExecStart"]
    assert units["castray-worker@.service"]["Service"]["KillSignal"] == "SIGTERM"


STUB_SRUN = """#!/bin/bash
# Stand-in for srun on one machine: drop SLURM's options, run the command here.
while [[ $# -gt 0 && $1 == -* ]]; do case $1 in -w|-N|-n) shift 2;; *) shift;; esac; done
exec "$@"
"""
STUB_SCONTROL = """#!/bin/bash
# Stand-in for `scontrol show hostnames <list>`: one name per line.
echo "$3" | tr ',' '\\n'
"""


@pytest.mark.ray
def test_the_slurm_script_starts_ray_and_castray_on_an_allocation(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", STUB_SRUN), ("scontrol", STUB_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    ray_tmp = tempfile.mkdtemp(prefix="crs-", dir="/tmp")
    port, ray_port = free_port(), free_port()
    ray_ports = " ".join(
        f"--{flag}={free_port()}"
        for flag in (
            "node-manager-port",
            "object-manager-port",
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "runtime-env-agent-port",
            "metrics-export-port",
            "dashboard-port",
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CASTRAY_", "RAY_", "DATABASE_URL"))}
    env.pop("REDIS_URL", None)
    env.update(
        {
            "PATH": f"{bin_dir}:{env['PATH']}",
            "SLURM_JOB_NODELIST": "vm",
            "SLURM_JOB_ID": "t1",
            "SLURM_CPUS_PER_TASK": "1",
            "CASTRAY_DIR": str(BASE_DIR),
            "CASTRAY_DATA_DIR": str(tmp_path / "data"),
            "RAY_TMP": ray_tmp,
            "RAY_PORT": str(ray_port),
            "CASTRAY_PORT": str(port),
            "RAY_START_ARGS": f"--include-dashboard=false --object-store-memory=100000000 {ray_ports}",
            "CASTRAY_HEARTBEAT_SECONDS": "0.5",
        }
    )
    log = open(tmp_path / "job.log", "wb")  # noqa: SIM115 - closed below
    job = subprocess.Popen(
        ["bash", str(DEPLOY / "castray.slurm")],
        cwd=BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 150
        nodes: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            assert job.poll() is None, (tmp_path / "job.log").read_text()
            token_file = tmp_path / "data" / "admin_password"
            if token_file.exists():
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                        health = json.loads(response.read())
                except urllib.error.HTTPError as exc:
                    health = json.loads(exc.read())
                except OSError:
                    health = {}
                if health.get("checks", {}).get("ray", {}).get("ok"):
                    out = subprocess.run(
                        [
                            sys.executable,
                            "manage.py",
                            "shell",
                            "-c",
                            "import json; from nodes.models import Node; "
                            "print(json.dumps(list(Node.objects.values('name', 'status', 'enabled'))))",
                        ],
                        cwd=BASE_DIR,
                        env={**env, "CASTRAY_DATA_DIR": str(tmp_path / "data")},
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    nodes = json.loads(out.stdout.strip().splitlines()[-1])
                    if any(n["name"] == "vm" and n["status"] == "online" for n in nodes):
                        break
            time.sleep(0.5)
        else:
            raise AssertionError(f"{nodes}\n" + (tmp_path / "job.log").read_text()[-5000:])
        # The Ray node was adopted (named after its castray.io/node label); demo nodes are off.
        assert {n["name"] for n in nodes if n["enabled"]} == {"vm"}
        assert "CastRay: http://" in (tmp_path / "job.log").read_text()
    finally:
        os.killpg(job.pid, signal.SIGTERM)
        try:
            job.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
        log.close()
        kill_by_marker(ray_tmp)
        kill_by_marker(str(tmp_path / "data"))


def test_the_systemd_units_verify() -> None:
    if not Path("/usr/bin/systemd-analyze").exists():
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(DEPLOY / "castray-web.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # The unit names paths of a real installation (/opt/castray, the castray user); only
    # syntax errors in the unit itself count here.
    problems = [
        line
        for line in result.stderr.splitlines()
        if "castray-web.service" in line and ("Unknown" in line or "Invalid" in line or "syntax" in line.lower())
    ]
    assert not problems, result.stderr
