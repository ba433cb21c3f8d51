"""Find Ray clusters running on this host without touching them.

Ray leaves files behind in its temp directory (`/tmp/ray` unless `--temp-dir` says
otherwise): `ray_current_cluster` holds the address of the last `ray start`, and every
session directory `session_<date>_<pid>/` of a head node holds `gcs_server_port_<node id>`.
Discovery reads those files, asks each GCS port whether anything listens (a TCP connect,
nothing more) and asks the dashboard ports on loopback for Ray's version. It imports
nothing from Ray, starts nothing, stops nothing and writes nothing under Ray's directories,
so a view may run it in the request.
"""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

SESSION_RE = re.compile(r"^session_\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}_\d+_(?P<pid>\d+)$")
GCS_PORT_PREFIX = "gcs_server_port_"


@dataclass
class Found:
    """One Ray cluster whose files or ports were found here."""

    address: str
    session_name: str = ""
    temp_dir: str = ""
    head_node_id: str = ""
    started_by_pid: int | None = None
    sources: list[str] = field(default_factory=list)
    alive: bool = False
    dashboard_url: str = ""

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])


def _interface_addresses() -> set[str]:
    """IPv4 addresses of this host's interfaces (Linux; elsewhere, none)."""
    out: set[str] = set()
    try:
        import fcntl
        import struct

        for _index, name in socket.if_nameindex():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                try:
                    packed = fcntl.ioctl(sock.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))  # SIOCGIFADDR
                except OSError:
                    continue
                out.add(socket.inet_ntoa(packed[20:24]))
    except (ImportError, OSError):
        pass
    return out


def local_addresses() -> set[str]:
    """Names and addresses that mean this host."""
    names = {"127.0.0.1", "localhost", "::1", "0.0.0.0", socket.gethostname()} | _interface_addresses()
    try:
        names.update(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        pass
    return names


def answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _sessions(root: Path) -> list[Path]:
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    # session_latest is a symlink to one of the others; newest first.
    found = [p for p in entries if SESSION_RE.match(p.name) and p.is_dir() and not p.is_symlink()]
    return sorted(found, key=lambda p: p.name, reverse=True)


def scan(temp_dirs: list[str], *, timeout: float = 0.5) -> list[Found]:
    """Clusters whose files are under `temp_dirs`, newest session first, with liveness."""
    by_port: dict[int, Found] = {}
    order: list[int] = []
    for root_text in temp_dirs:
        root = Path(root_text)
        current = _read(root / "ray_current_cluster")
        current_host, _, current_port = current.rpartition(":")
        for session in _sessions(root):
            for port_file in session.glob(f"{GCS_PORT_PREFIX}*"):
                port_text = _read(port_file)
                if not port_text.isdigit():
                    continue
                port = int(port_text)
                if port in by_port:
                    continue  # a newer session already claimed this port; older ones are gone
                match = SESSION_RE.match(session.name)
                host = current_host if current_port == port_text and current_host else "127.0.0.1"
                found = Found(
                    address=f"{host}:{port}",
                    session_name=session.name,
                    temp_dir=str(root),
                    head_node_id=port_file.name[len(GCS_PORT_PREFIX) :],
                    started_by_pid=int(match["pid"]) if match else None,
                    sources=[f"session files in {session}"],
                )
                if current_port == port_text:
                    found.sources.append(f"address file {root / 'ray_current_cluster'}")
                by_port[port] = found
                order.append(port)
        if current_port.isdigit() and int(current_port) not in by_port:
            # The head is on another host (this host runs a worker raylet) or its session
            # files are elsewhere: the address file alone tells where it is.
            found = Found(address=current, temp_dir=str(root), sources=[f"address file {root / 'ray_current_cluster'}"])
            by_port[int(current_port)] = found
            order.append(int(current_port))
    results = [by_port[p] for p in order]
    for found in results:
        host = found.address.rpartition(":")[0]
        found.alive = answers("127.0.0.1" if host in local_addresses() else host, found.port, timeout)
    return results


def dashboards(ports: list[int], *, timeout: float = 0.5) -> list[dict[str, str]]:
    """Ray dashboards answering on loopback: url, Ray version and session name."""
    out = []
    for port in ports:
        url = f"http://127.0.0.1:{port}"
        if not answers("127.0.0.1", port, timeout):
            continue
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=timeout) as response:
                body = json.loads(response.read(65536) or b"{}")
        except (OSError, ValueError, urllib.error.URLError):
            continue
        if isinstance(body, dict) and body.get("ray_version"):
            out.append(
                {"url": url, "ray_version": str(body["ray_version"]), "session_name": body.get("session_name", "")}
            )
    return out


def discover(temp_dirs: list[str], dashboard_ports: list[int], *, timeout: float = 0.5) -> list[Found]:
    """Clusters found on this host, each with its dashboard when one answers for its session."""
    found = scan(temp_dirs, timeout=timeout)
    boards = dashboards(dashboard_ports, timeout=timeout)
    alive = [f for f in found if f.alive]
    for board in boards:
        owners = [f for f in alive if board["session_name"] and f.session_name == board["session_name"]]
        if not owners and len(alive) == 1 and not board["session_name"]:
            owners = alive  # one cluster, one dashboard: they belong together
        for owner in owners:
            owner.dashboard_url = board["url"]
            owner.sources.append(f"dashboard {board['url']}")
    return found
