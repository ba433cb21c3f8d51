"""Hosts as network namespaces: several machines, each with its own address and raylet, on one box.

Used by the shaped-link benchmark (`castray_bench hetero --links shaped`) and, through
tests/netns.py, by the multi-host tests. `RayCluster` (bridge/bench/raynodes.py) alone runs
every raylet on 127.0.0.1 in one network stack, so a link can neither fail nor be slow.
`NetnsHosts` makes real hosts instead:

- a Linux bridge in the root namespace holding `<subnet>.1`, where the Ray head runs (and the
  CastRay server, whose worker must reach every raylet);
- per host a network namespace with one end of a veth pair (`eth0`, `<subnet>.<i+2>`), the
  other end a port of the bridge, and its own raylet started inside it with
  `ip netns exec NS ray start --address <head> --node-ip-address <its address>
  --labels castray.io/node=<host>`;
- `shape()` puts a tbf (rate, burst, latency) on both directions of a host's link, `cut()` and
  `restore()` take its link down and up, `kill_raylet()` kills its raylet's process group;
- `link_rate()` times one plain TCP stream across a link, so a bound can use the rate the
  link really gives rather than the one configured.

Teardown goes by what this instance made: the Ray processes by process group and by their
temp dir on the command line, anything left in a namespace by `ip netns pids`, then the
namespaces and links by name. Every name carries a random tag, so concurrent runs never
touch each other's. `leftovers()` lists what remains, for tests that teardown was complete.

Needs root (CAP_NET_ADMIN) and `ip`/`tc`; `unavailable()` says why it cannot run here.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from bridge.bench.raynodes import RayCluster, RayNodeProcess, kill_by_marker, processes_naming

LABEL = "castray.io/node"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


def unavailable() -> str:
    """Why namespaces cannot be made here, or "" when they can (tried for real, then undone)."""
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "the ip and tc commands are missing"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"crprobe{secrets.token_hex(3)}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return ""


_SINK = """
import socket, sys, time
server = socket.create_server((sys.argv[1], 0))
print(server.getsockname()[1], flush=True)
conn, _ = server.accept()
got, started = 0, None
while True:
    data = conn.recv(1 << 16)
    if not data:
        break
    started = started or time.monotonic()
    got += len(data)
print(got, time.monotonic() - started, flush=True)
"""


def tcp_rate(sink_netns: str | None, sink_address: str, sender_netns: str | None, size: int) -> float:
    """Bytes per second of one TCP stream of `size` bytes into a sink at `sink_address`.

    Timed at the sink from its first byte to the end, so starting the processes is not counted.
    """

    def inside(netns: str | None) -> list[str]:
        return ["ip", "netns", "exec", netns] if netns else []

    sink = subprocess.Popen(
        [*inside(sink_netns), sys.executable, "-c", _SINK, sink_address], stdout=subprocess.PIPE, text=True
    )
    try:
        assert sink.stdout is not None
        port = int(sink.stdout.readline())
        send = f"import socket; s = socket.create_connection(({sink_address!r}, {port})); s.sendall(bytes({size}))"
        subprocess.run([*inside(sender_netns), sys.executable, "-c", send], check=True, timeout=120)
        got, seconds = sink.stdout.readline().split()
        if int(got) != size:
            raise RuntimeError(f"the sink got {got} of {size} bytes")
        return size / float(seconds)
    finally:
        sink.kill()
        sink.wait(timeout=10)


def _free_subnet() -> str:
    """A 10.77.N /24 that no address in the root namespace uses (another run may hold one)."""
    used = _ip("-o", "-4", "addr").stdout
    for n in range(254):
        if f" 10.77.{n}." not in used:
            return f"10.77.{n}"
    raise RuntimeError("no free 10.77.N.0/24 subnet")


@dataclass
class Host:
    name: str  # the CastRay node name, also the raylet's castray.io/node label
    netns: str
    address: str
    veth: str  # the root namespace's end, a port of the bridge
    raylet: RayNodeProcess | None = None


class NetnsHosts:
    """A Ray head on a bridge in the root namespace and `count` hosts in namespaces around it."""

    def __init__(self, count: int, *, name: str = "ns") -> None:
        self.tag = secrets.token_hex(3)
        self.cluster = RayCluster(name)
        self.subnet = _free_subnet()
        self.head_address = f"{self.subnet}.1"
        self.bridge = f"crb{self.tag}"
        self.hosts = [
            Host(f"host-{i + 1}", f"crns-{self.tag}-{i + 1}", f"{self.subnet}.{i + 2}", f"crv{self.tag}h{i + 1}")
            for i in range(count)
        ]
        self.made_links: list[str] = []
        self.made_netns: list[str] = []

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    # -- building ----------------------------------------------------------------------------

    def up(self) -> None:
        """Make the bridge and the hosts' namespaces and links (no Ray yet)."""
        _ip("link", "add", self.bridge, "type", "bridge")
        self.made_links.append(self.bridge)
        _ip("addr", "add", f"{self.head_address}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for host in self.hosts:
            _ip("netns", "add", host.netns)
            self.made_netns.append(host.netns)
            _ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
            self.made_links.append(host.veth)
            _ip("link", "set", host.veth, "master", self.bridge)
            _ip("link", "set", host.veth, "up")
            _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.netns, "link", "set", "lo", "up")
            _ip("-n", host.netns, "link", "set", "eth0", "up")

    def start_ray(self, *, head_label: str = "host-0", one_by_one: bool = False) -> str:
        """Start the head on the bridge address, then a raylet in every host; return the GCS address.

        `one_by_one` waits for each raylet to be up before the next starts, and starts the head
        or a raylet that gave up once more: `ray start` allows a node 30 s to register, which
        several raylets starting together on a loaded machine can miss.
        """
        address = self.cluster.start_head(
            resources={"host_0": 1},
            labels={LABEL: head_label},
            node_ip=self.head_address,
            attempts=2 if one_by_one else 1,
        )
        for host in self.hosts:
            self.start_raylet(host.name)
            if one_by_one and not self.wait_raylet(host.name):
                self.start_raylet(host.name)
                if not self.wait_raylet(host.name):
                    raise RuntimeError(f"the raylet of {host.name} did not start:\n{self.cluster.logs()}")
        return address

    def wait_raylet(self, name: str, timeout: float = 120.0) -> bool:
        """Whether the host's latest `ray start` reports its node started (False: it exited first)."""
        raylet = self.host(name).raylet
        assert raylet is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Each start appends to the log; the latest one's own output follows its last banner.
            if raylet.log_path.read_text(errors="replace").rsplit("Local node IP", 1)[-1].count("Ray runtime started"):
                return True
            if not raylet.running:
                return False
            time.sleep(0.3)
        return False

    def start_raylet(self, name: str) -> None:
        host = self.host(name)
        if host.raylet is not None:
            host.raylet.start()  # the same arguments: a restarted machine
            return
        host.raylet = self.cluster.add_worker(
            host.name,
            labels={LABEL: host.name},
            node_ip=host.address,
            prefix=["ip", "netns", "exec", host.netns],
        )

    # -- links and failures --------------------------------------------------------------------

    def shape(self, name: str, *, rate: str, ingress: str = "", burst: str = "64kb", latency: str = "50ms") -> None:
        """A tbf on the host's link, both ways: what it sends (in its namespace) and receives.

        A tbf limits what leaves a device: the one on `eth0` in the namespace caps the host's
        egress at `rate`, the one on the bridge's end of the veth caps its ingress (`ingress`,
        else `rate`). A stream from host A to host B so runs at min(A's egress, B's ingress).
        """
        host = self.host(name)

        def tbf(value: str) -> list[str]:
            return ["root", "tbf", "rate", value, "burst", burst, "latency", latency]

        subprocess.run(["tc", "qdisc", "replace", "dev", host.veth, *tbf(ingress or rate)], check=True, timeout=30)
        subprocess.run(
            ["ip", "netns", "exec", host.netns, "tc", "qdisc", "replace", "dev", "eth0", *tbf(rate)],
            check=True,
            timeout=30,
        )

    def link_rate(self, name: str, *, into: bool, size: int) -> float:
        """Bytes per second of one TCP stream of `size` bytes into the host (or out of it).

        The other end is the bridge's address in the root namespace, whose side is unshaped,
        so the stream measures this host's link alone.
        """
        host = self.host(name)
        if into:
            return tcp_rate(host.netns, host.address, None, size)
        return tcp_rate(None, self.head_address, host.netns, size)

    def cut(self, name: str) -> None:
        """Take the host's link down: packets to and from it are lost, nothing is refused."""
        _ip("link", "set", self.host(name).veth, "down")

    def restore(self, name: str) -> None:
        _ip("link", "set", self.host(name).veth, "up")

    def kill_raylet(self, name: str) -> None:
        """The host's raylet and every process it started die at once."""
        raylet = self.host(name).raylet
        assert raylet is not None
        raylet.kill(signal.SIGKILL)

    # -- teardown --------------------------------------------------------------------------------

    def down(self) -> None:
        """Kill every process this made and delete its namespaces and links; safe to call twice."""
        try:
            self.cluster.stop()
        finally:
            for netns in self.made_netns:
                for pid in _ip("netns", "pids", netns, check=False).stdout.split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
            kill_by_marker(str(self.cluster.root))
            for netns in self.made_netns:
                _ip("netns", "del", netns, check=False)
            for link in reversed(self.made_links):
                _ip("link", "del", link, check=False)
            shutil.rmtree(self.cluster.root, ignore_errors=True)

    def leftovers(self, wait: float = 10.0) -> list[str]:
        """What of this instance still exists (processes, namespaces, links); [] once all is gone.

        A killed process may take a moment to be reaped, so this waits up to `wait` seconds.
        """
        deadline = time.monotonic() + wait
        while True:
            found = [f"netns {n}" for n in _ip("netns", "list").stdout.split() if self.tag in n]
            found += [f"link {n}" for n in _ip("-o", "link").stdout.split() if self.tag in n]
            found += [f"process {pid}" for pid in processes_naming(str(self.cluster.root))]
            if not found or time.monotonic() > deadline:
                return found
            time.sleep(0.2)
