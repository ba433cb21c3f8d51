"""Ray nodes as `ray start --block` processes on this machine, each in its own temp dir and session.

Used by the namespace-host benchmark (bridge/bench/netns.py) and by the multi-node tests
(tests/cluster_fixtures.py). Each `ray start` runs in its own session (process group) with its
own temp dir and ports; teardown kills exactly those process groups and any process whose
command line names one of those temp dirs. `ray stop` is never used: it would stop every Ray
on the machine.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent
# Beside the interpreter (a virtualenv's bin), found by path: `ip netns exec` needs one.
RAY = str(Path(sys.executable).with_name("ray"))
if not Path(RAY).exists():
    RAY = shutil.which("ray") or RAY


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports this session has handed to a Ray process; a port is never handed out twice.
_HANDED: set[int] = set()


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return port not in _HANDED


def _port_range(width: int = 60) -> tuple[int, int]:
    """`width` free ports below the kernel's ephemeral range.

    Every port a Ray node listens on is drawn there, never with bind(0): the kernel hands
    ports of the ephemeral range to outgoing connections too, and the many gRPC clients of a
    starting cluster took a port picked with bind(0) before its raylet or runtime-env agent
    could bind it (a raylet whose agent then kept resetting connections, marked dead by Ray
    before the test's deliberate kill). Worker ranges must not overlap the other ports either.
    """
    ephemeral_low = _ephemeral_low()
    for _ in range(200):
        start = random.randrange(10000, ephemeral_low - width)
        if all(_bindable(port) for port in (start, start + width // 2, start + width - 1)):
            _HANDED.update(range(start, start + width))
            return start, start + width - 1
    raise RuntimeError(f"no {width} free ports below {ephemeral_low} for Ray")


def listen_port() -> int:
    return _port_range(1)[0]


class RayNodeProcess:
    def __init__(
        self,
        name: str,
        args: list[str],
        temp_dir: Path,
        log: Path,
        env: dict[str, str],
        prefix: list[str] | None = None,
    ) -> None:
        self.name = name
        # A command that runs `ray start` elsewhere and execs it (e.g. `ip netns exec NS`), so the
        # process group and pid stay the raylet's.
        self.prefix = prefix or []
        self.args = args
        self.temp_dir = temp_dir
        self.log_path = log
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed on stop
        self.proc = subprocess.Popen(
            [*self.prefix, RAY, "start", *self.args, "--block"],
            cwd=BASE_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so it can be killed alone
        )
        log.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL, wait: float = 15.0) -> None:
        """Kill this node's process group, then anything still naming its temp dir."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        kill_by_marker(str(self.temp_dir))


def processes_naming(marker: str) -> list[int]:
    """Live processes (not zombies) whose command line contains `marker`, this one excepted."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def kill_by_marker(marker: str) -> list[int]:
    """SIGKILL every process whose command line contains `marker` (a temp dir only we use)."""
    killed = []
    for pid in processes_naming(marker):
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:
            pass
    return killed


class RayCluster:
    """A Ray cluster of `ray start` processes on this machine, each node in its own temp dir."""

    def __init__(self, name: str) -> None:
        # Short paths: Ray's unix sockets live under the temp dir and have a 107-byte limit.
        self.root = Path(tempfile.mkdtemp(prefix=f"cr{name}-", dir="/tmp"))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "DJANGO_"))}
        # Token authentication, as Ray 2.60 has by default (the token is ~/.ray/auth_token).
        self.env["RAY_AUTH_MODE"] = "token"
        self.env["PYTHONPATH"] = str(BASE_DIR)
        self.env["RAY_worker_niceness"] = "0"  # the node actors are the data plane (dataplane/process.py)
        self.nodes: list[RayNodeProcess] = []
        self.address = ""

    def _node_args(
        self, temp_dir: Path, *, num_cpus: int, resources: dict[str, float], labels: dict[str, str]
    ) -> list[str]:
        low, high = _port_range()
        args = [
            f"--temp-dir={temp_dir}",
            f"--num-cpus={num_cpus}",
            "--disable-usage-stats",
            f"--min-worker-port={low}",
            f"--max-worker-port={high}",
            f"--node-manager-port={listen_port()}",
            f"--object-manager-port={listen_port()}",
            f"--dashboard-agent-listen-port={listen_port()}",
            f"--dashboard-agent-grpc-port={listen_port()}",
            f"--runtime-env-agent-port={listen_port()}",
            f"--metrics-export-port={listen_port()}",
            "--object-store-memory=100000000",
        ]
        if resources:
            args.append(f"--resources={json.dumps(resources)}")
        if labels:
            args.append("--labels=" + ",".join(f"{k}={v}" for k, v in labels.items()))
        return args

    def start_head(
        self,
        *,
        resources: dict[str, float] | None = None,
        labels: dict[str, str] | None = None,
        node_ip: str = "127.0.0.1",
        attempts: int = 1,
    ) -> str:
        """Start the head; `attempts` > 1 starts it afresh (new ports and temp dir) when one gives up.

        `ray start` allows its node 30 s to register with the GCS, which a loaded machine misses.
        """
        for attempt in range(attempts):
            port = listen_port()
            temp_dir = self.root / ("n0" if attempt == 0 else f"n0.{attempt}")
            args = [
                "--head",
                f"--port={port}",
                f"--node-ip-address={node_ip}",
                "--include-dashboard=false",
                f"--dashboard-port={listen_port()}",
                *self._node_args(temp_dir, num_cpus=1, resources=resources or {}, labels=labels or {}),
            ]
            node = RayNodeProcess("head", args, temp_dir, self.root / f"{temp_dir.name}.log", self.env)
            node.start()
            self.nodes.append(node)
            self.address = f"{node_ip}:{port}"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and node.running:
                if (temp_dir / "ray_current_cluster").exists():
                    return self.address
                time.sleep(0.2)
            node.kill()
        raise AssertionError("the Ray head did not start:\n" + self.logs())

    def add_worker(
        self,
        name: str,
        *,
        resources: dict[str, float] | None = None,
        labels: dict[str, str] | None = None,
        node_ip: str = "",
        prefix: list[str] | None = None,
    ) -> RayNodeProcess:
        temp_dir = self.root / name
        args = [
            f"--address={self.address}",
            *([f"--node-ip-address={node_ip}"] if node_ip else []),
            *self._node_args(temp_dir, num_cpus=1, resources=resources or {}, labels=labels or {}),
        ]
        node = RayNodeProcess(name, args, temp_dir, self.root / f"{name}.log", self.env, prefix)
        node.start()
        self.nodes.append(node)
        return node

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.root.glob("*.log"))
        )

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.kill(signal.SIGTERM, wait=10)
        kill_by_marker(str(self.root))
