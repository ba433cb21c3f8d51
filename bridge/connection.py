"""Connecting to Ray and reading what it reports. Only the worker imports this module."""

from __future__ import annotations

import errno
import os
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from django.conf import settings

from castray_site.lib import short_error

HEAD_RESOURCE = "node:__internal_head__"
# Ray's C++ failure signal handler (installed by ray.init, process-wide, read when ray is first
# imported) also takes SIGTERM: stopping the server printed a stack dump and "Aborted" instead
# of letting the server stop its worker, actors and local Ray. Python's own handlers do that.
os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
# A local Ray started here (ray.init without an address) starts its workers at nice 0, not
# Ray's 15: the node actors are the data plane (see dataplane/process.py).
os.environ.setdefault("RAY_worker_niceness", "0")
# Ray's connection belongs to the process (`ray.init` is process-wide), not to a worker, so
# what this process attached to is kept here, beside it. What it asked `ray.init` for: None
# until it did, "" for a local Ray it started.
_attached: str | None = None
# The dashboard URL of the cluster attached to, from the context `ray.init` returned ("" when
# the cluster has no dashboard, or when the host process initialised Ray itself).
_dashboard_url = ""


class RayUnavailable(Exception):
    """Ray could not be reached; the message says where and why."""


def attached() -> str | None:
    """The address this process attached to (None: it never attached itself)."""
    return _attached


def precheck(address: str) -> None:
    # ray.init on an unreachable address retries for a long time; a plain TCP connect
    # tells the operator at once that nothing listens there.
    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailable(f"RAY_ADDRESS {address!r} is not host:port")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            pass
    except OSError as exc:
        raise RayUnavailable(f"cannot reach Ray at {address}: {exc}") from None


def token_available() -> bool:
    """Whether a Ray authentication token can be found the way Ray looks for one."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return Path(path).is_file()


def _configure_auth(address: str) -> None:
    """Pass Ray's token authentication through to clusters that use it.

    Ray turns token mode on by itself only for a local cluster it finds or starts; a driver
    that attaches to an explicit address must ask for it. A token-mode client also works
    with a cluster that has authentication off, so `auto` turns it on whenever a token is
    at hand (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token).
    """
    if settings.CASTRAY_RAY_AUTH_TOKEN_FILE:
        os.environ["RAY_AUTH_TOKEN_PATH"] = settings.CASTRAY_RAY_AUTH_TOKEN_FILE
    mode = settings.CASTRAY_RAY_AUTH
    if mode == "auto":
        if not address or os.environ.get("RAY_AUTH_MODE"):
            return  # a local Ray decides for itself; an operator's RAY_AUTH_MODE wins
        mode = "token" if token_available() else ""
    if not mode or os.environ.get("RAY_AUTH_MODE") == mode:
        return
    os.environ["RAY_AUTH_MODE"] = mode
    try:
        # Private, and the only way: Ray caches its configuration when first imported and has
        # no public call to read RAY_AUTH_MODE again before the next `ray.init`.
        from ray._raylet import Config

        Config.initialize("")
    except Exception:  # noqa: BLE001 - older Ray: the environment alone is enough
        pass


def connect(address: str) -> dict[str, Any]:
    """Start a local Ray (empty address) or attach to `address`; return what we see.

    Asked for another cluster than the one this process is attached to, it detaches
    (`ray.shutdown()`) first. Detaching from a cluster someone else started leaves that
    cluster running; only a local Ray this process started itself stops with it.
    """
    global _attached, _dashboard_url
    import ray

    if address:
        precheck(address)
    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if _attached is None and (not address or address in ("auto", current)):
            return snapshot()  # initialised by its host process (a test, a shell): keep it
        if address == _attached or (address and address == current):
            return snapshot()
        ray.shutdown()
        _attached, _dashboard_url = None, ""
    _configure_auth(address)
    kwargs: dict[str, Any] = {
        "namespace": settings.CASTRAY_RAY_NAMESPACE,
        "log_to_driver": False,
        "ignore_reinit_error": True,
    }
    if settings.CASTRAY_RAY_SHIP_CODE:
        base = Path(settings.BASE_DIR)
        kwargs["runtime_env"] = {"py_modules": [str(base / "dataplane")]}
    # ray.init replaces the SIGTERM handler of the main thread with one that exits at once;
    # the worker's own handler (finish the step, then stop) is put back afterwards.
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGTERM) if main else None
    try:
        if address:
            # Attach without resource arguments: the cluster's own configuration wins.
            context = ray.init(address=address, **kwargs)
        else:
            context = ray.init(address="local", include_dashboard=False, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure to start or attach is "degraded"
        if ray.is_initialized():
            ray.shutdown()
        raise RayUnavailable(f"Ray did not start at {address or 'local'}: {short_error(exc)}") from None
    finally:
        if main and callable(handler):
            signal.signal(signal.SIGTERM, handler)
    _attached = address
    url = context.dashboard_url or ""
    _dashboard_url = url if not url or url.startswith("http") else f"http://{url}"
    return snapshot()


def started_here() -> bool:
    """Whether this process started the Ray it is attached to (a local one: it ends with us)."""
    return _attached == ""


def disconnect() -> None:
    """Detach this process from Ray (a local Ray it started stops; other clusters go on)."""
    global _attached, _dashboard_url
    import ray

    if ray.is_initialized():
        ray.shutdown()
    _attached, _dashboard_url = None, ""


def ray_node_row(n: dict[str, Any]) -> dict[str, Any]:
    """One Ray node as CastRay records it (Cluster.ray_nodes)."""
    resources = n.get("Resources") or {}
    labels = {k: v for k, v in (n.get("Labels") or {}).items() if k != "ray.io/node-id"}
    return {
        "node_id": n.get("NodeID"),
        "address": n.get("NodeManagerAddress"),
        "hostname": n.get("NodeManagerHostname", ""),
        "node_manager_port": n.get("NodeManagerPort"),
        "alive": bool(n.get("Alive")),
        "is_head": HEAD_RESOURCE in resources,
        "resources": {k: v for k, v in resources.items() if not k.startswith("node:")},
        "labels": labels,
        "death_reason": n.get("DeathReasonMessage", "") if not n.get("Alive") else "",
    }


def snapshot() -> dict[str, Any]:
    import ray

    context = ray.get_runtime_context()
    return {
        "ray_version": ray.__version__,
        "gcs_address": context.gcs_address,
        "resources": ray.cluster_resources(),
        "available_resources": ray.available_resources(),
        "ray_nodes": [ray_node_row(n) for n in ray.nodes()],
        "dashboard_url": _dashboard_url,
    }


def stats(namespace: str) -> dict[str, Any]:
    """Actors, object store use and per-node resources: what /ray/stats shows."""
    import ray

    total = ray.cluster_resources()
    available = ray.available_resources()
    store_total = float(total.get("object_store_memory", 0))
    out: dict[str, Any] = {
        # Ray accounts stored objects as used object_store_memory, per node and in total.
        "object_store": {
            "total_bytes": int(store_total),
            "used_bytes": int(max(0.0, store_total - float(available.get("object_store_memory", 0)))),
        },
        "actors": {"total": 0, "alive": 0, "by_state": {}, "castray": []},
        "nodes": {},
    }
    per_node_free, actors = _gcs_tables()
    if per_node_free is not None:
        for node in ray.nodes():
            if not node.get("Alive"):
                continue
            res = node.get("Resources") or {}
            free = per_node_free.get(node["NodeID"], {})
            out["nodes"][node["NodeID"]] = {
                "cpu": res.get("CPU", 0),
                "cpu_free": free.get("CPU", 0),
                "object_store_bytes": int(res.get("object_store_memory", 0)),
                "object_store_used_bytes": int(
                    max(0.0, float(res.get("object_store_memory", 0)) - float(free.get("object_store_memory", 0)))
                ),
            }
    by_state: dict[str, int] = {}
    for actor in actors.values():
        by_state[actor.get("State", "UNKNOWN")] = by_state.get(actor.get("State", "UNKNOWN"), 0) + 1
        if actor.get("State") == "ALIVE" and str(actor.get("Name", "")).startswith("castnode:"):
            out["actors"]["castray"].append(
                {
                    "name": actor.get("Name"),
                    "pid": actor.get("Pid"),
                    "node_id": (actor.get("Address") or {}).get("NodeID", ""),
                }
            )
    out["actors"].update(total=len(actors), alive=by_state.get("ALIVE", 0), by_state=by_state)
    return out


def _gcs_tables() -> tuple[dict[str, dict[str, float]] | None, dict[str, dict[str, Any]]]:
    """Free resources per live Ray node (None: unreadable), and the actor table, from the GCS.

    Ray's private `ray._private.state`, used here and nowhere else, because Ray 2.60 has no
    public call that works everywhere CastRay runs: the state API (`ray.util.state`) asks the
    dashboard's HTTP server, which the local Ray CastRay starts does not run
    (include_dashboard=False) and clusters may run without; `ray.nodes()` gives each node's
    total resources but not what is free of them; nothing else lists actors with their state,
    pid and node. Each read is best effort: the totals still stand without them.
    """
    from ray._private import state

    try:
        free: dict[str, dict[str, float]] | None = state.available_resources_per_node()
    except Exception:  # noqa: BLE001 - internal API: its absence must not cost the totals
        free = None
    try:
        actors: dict[str, dict[str, Any]] = state.actors()
    except Exception:  # noqa: BLE001
        actors = {}
    return free, actors


def probe(targets: dict[str, tuple[str, int]], timeout: float = 1.0) -> dict[str, tuple[str, str]]:
    """TCP-connect to each raylet's port; return node id -> ("", "") (answered) or (kind, error).

    A raylet whose process is gone refuses at once, long before the GCS's own health
    check declares the node dead (about 15 s for a killed raylet). `kind` (see
    `probe_failure`) says whether the raylet refused or its host could not be reached.
    """

    def one(item: tuple[str, tuple[str, int]]) -> tuple[str, tuple[str, str]]:
        node_id, (host, port) = item
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return node_id, ("", "")
        except OSError as exc:
            return node_id, probe_failure(exc, timeout)

    if not targets:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
        return dict(pool.map(one, targets.items()))


# A host that cannot be reached at all: its link or its network is down, or it is off.
UNREACHABLE_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}


def probe_failure(exc: OSError, timeout: float) -> tuple[str, str]:
    """("refused" | "unreachable" | "error", what happened) for a failed connection to a raylet.

    Refused means the host answered and nothing listens on the port: the raylet is gone.
    Unreachable (no route, or no answer within the timeout) means the network or the whole
    host is: the raylet may be fine and come back with the link. The two call for different
    reasons in front of an operator, so they are never reported as each other.
    """
    if isinstance(exc, ConnectionRefusedError):
        return "refused", "connection refused"
    if isinstance(exc, TimeoutError):
        return "unreachable", f"no answer within {timeout:g} s"
    if exc.errno in UNREACHABLE_ERRNOS:
        return "unreachable", os.strerror(exc.errno).lower()
    return "error", str(exc) or type(exc).__name__
