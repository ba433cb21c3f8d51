"""Capacity-aware trees and chunk sizes (`bridge/planner.py` is pure: no Django, no Ray)."""

from __future__ import annotations

import pytest

from bridge.bounds import Bounds, cast_bounds
from bridge.planner import Capacity, choose_chunk_size, depth, plan_capacity
from tests.dataplane.test_planner import hops, shape

pytestmark = pytest.mark.unit

C = 16.0


def caps(n: int, **special: tuple[float, float]) -> dict[int, Capacity]:
    """Every target at C both ways, except `n<id>=(egress, ingress)`."""
    out = {i: Capacity(C, C) for i in range(1, n + 1)}
    for key, (egress, ingress) in special.items():
        out[int(key[1:])] = Capacity(egress, ingress)
    return out


def test_equal_caps_make_a_chain_so_the_source_sends_one_copy() -> None:
    children, record = plan_capacity("src", Capacity(C, C), hops(4), caps(4))
    assert shape(children) == {"n1": {"n2": {"n3": {"n4": {}}}}}
    assert record["planner"] == "capacity" and record["fan_out"] == 1


@pytest.mark.parametrize("slow", [1, 4, 7])
def test_a_slow_node_is_a_leaf_wherever_it_was_listed(slow: int) -> None:
    children, record = plan_capacity("src", Capacity(C, C), hops(7), caps(7, **{f"n{slow}": (C / 4, C / 4)}))
    edges = record["edges"]
    assert not [e for e in edges if e[0] == f"n{slow}"]  # relays to no one
    fast = [f"n{i}" for i in range(1, 8) if i != slow]
    chain = [["src", fast[0]], *[[a, b] for a, b in zip(fast, fast[1:], strict=False)]]
    assert all(edge in edges for edge in chain)
    assert depth(children) == 7


def test_a_slow_egress_node_relays_to_no_one() -> None:
    _, record = plan_capacity("src", Capacity(C, C), hops(7), caps(7, n2=(C / 4, C)))
    assert not [e for e in record["edges"] if e[0] == "n2"]


def test_fan_out_follows_egress_over_the_childrens_ingress() -> None:
    targets = {1: Capacity(4 * C, C), **{i: Capacity(C / 4, C) for i in range(2, 6)}}
    children, _ = plan_capacity("src", Capacity(C, C), hops(5), targets)
    assert shape(children) == {"n1": {"n2": {}, "n3": {}, "n4": {}, "n5": {}}}


def test_unknown_caps_fall_back_to_the_fan_out_with_slow_achieved_rates_last() -> None:
    targets = {1: Capacity(achieved=1.0), 2: Capacity(achieved=9.0), 3: Capacity(), 4: Capacity(achieved=2.0)}
    children, record = plan_capacity("src", Capacity(), hops(4), targets, 1)
    assert shape(children) == {"n2": {"n3": {"n4": {"n1": {}}}}}
    assert "planner" not in record


def test_nodes_of_about_the_same_achieved_rate_keep_the_listed_order() -> None:
    # The last casts' noise (15.35 against 15.36) must not decide who relays to whom.
    targets = {1: Capacity(achieved=15.35), 2: Capacity(achieved=15.30), 3: Capacity(achieved=15.36)}
    children, _ = plan_capacity("src", Capacity(), hops(3), targets, 1)
    assert shape(children) == {"n1": {"n2": {"n3": {}}}}


def test_chunks_shrink_for_deep_capped_trees_and_stay_large_otherwise() -> None:
    mib = 1024 * 1024
    assert choose_chunk_size(16 * mib, 7, 4 * mib) == 256 * 1024
    assert choose_chunk_size(64 * mib, 2, 4 * mib) == 2 * mib
    assert choose_chunk_size(1024 * mib, 2, 4 * mib) == 4 * mib
    assert choose_chunk_size(16 * mib, 1, 4 * mib) == 4 * mib
    assert choose_chunk_size(None, 24, 4 * mib) == 4 * mib
    assert choose_chunk_size(8 * mib, 24, 4 * mib) == 256 * 1024


def test_the_kumar_ross_bound_and_each_targets_own() -> None:
    size, c = 64.0, 16.0
    targets = {i: (c, c) for i in range(1, 7)} | {7: (c / 4, c / 4)}
    bounds = cast_bounds(int(size), c, targets)
    assert bounds.cast == pytest.approx(16.0)  # the slow target's download
    assert bounds.targets[1] == pytest.approx(4.0) and bounds.targets[7] == pytest.approx(16.0)
    equal = cast_bounds(int(size), c, {i: (c, c) for i in range(1, 8)})
    assert equal.cast == pytest.approx(4.0)
    # Uploads bind when the targets give back little: 3 targets that upload nothing.
    assert cast_bounds(int(size), c, {i: (1e-9, 1e9) for i in range(1, 4)}).cast == pytest.approx(12.0)
    assert cast_bounds(int(size), None, {1: (c, c)}) == Bounds(None, {1: None})
