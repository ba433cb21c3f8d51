"""Hosts as network namespaces for the tests: the harness is bridge/bench/netns.py.

It lives under bridge/ because the shaped-link benchmark (`castray_bench hetero --links shaped`)
builds the same hosts; the tests import it from here.
"""

from bridge.bench.netns import Host, NetnsHosts, tcp_rate, unavailable

__all__ = ["Host", "NetnsHosts", "tcp_rate", "unavailable"]
