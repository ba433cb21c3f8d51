"""Distribution trees planned by the bridge (`bridge/planner.py` is pure: no Django, no Ray)."""

from __future__ import annotations

import pytest

from bridge.planner import plan_tree
from dataplane.contract import Hop, flatten

pytestmark = pytest.mark.unit


def hops(count: int) -> list[Hop]:
    return [Hop(i, f"n{i}", "10.0.0.1", 9000 + i) for i in range(1, count + 1)]


def shape(children: tuple[Hop, ...]) -> dict[str, object]:
    """A tree as nested node names, so a test compares whole shapes at once."""
    return {hop.node: shape(hop.children) for hop in children}


def test_fan_out_one_is_a_chain() -> None:
    children, record = plan_tree("src", hops(4), 1)
    assert shape(children) == {"n1": {"n2": {"n3": {"n4": {}}}}}
    assert record == {
        "root": "src",
        "fan_out": 1,
        "edges": [["src", "n1"], ["n1", "n2"], ["n2", "n3"], ["n3", "n4"]],
    }


def test_fan_out_two_fills_each_level_before_the_next() -> None:
    children, record = plan_tree("src", hops(6), 2)
    assert shape(children) == {"n1": {"n3": {}, "n4": {}}, "n2": {"n5": {}, "n6": {}}}
    assert record["edges"] == [["src", "n1"], ["src", "n2"], ["n1", "n3"], ["n1", "n4"], ["n2", "n5"], ["n2", "n6"]]


def test_fan_out_three() -> None:
    children, record = plan_tree("src", hops(5), 3)
    assert shape(children) == {"n1": {"n4": {}, "n5": {}}, "n2": {}, "n3": {}}
    assert record["fan_out"] == 3
    assert record["edges"] == [["src", "n1"], ["src", "n2"], ["src", "n3"], ["n1", "n4"], ["n1", "n5"]]


def test_every_target_is_placed_once_with_its_address() -> None:
    targets = hops(10)
    children, _ = plan_tree("src", targets, 3)
    placed = flatten(children)
    assert sorted(h.target for h in placed) == [h.target for h in targets]
    assert {(h.target, h.address, h.port) for h in placed} == {(h.target, h.address, h.port) for h in targets}


def test_children_the_hops_came_with_are_replaced_by_the_plan() -> None:
    stale = Hop(99, "stale", "10.0.0.9", 1)
    first, second = hops(2)
    children, _ = plan_tree("src", [Hop(1, "n1", first.address, first.port, (stale,)), second], 2)
    assert shape(children) == {"n1": {}, "n2": {}}


@pytest.mark.parametrize("fan_out", [0, -1])
def test_a_fan_out_below_one_is_refused(fan_out: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_tree("src", hops(3), fan_out)


def test_no_targets_plan_an_empty_tree() -> None:
    children, record = plan_tree("src", [], 2)
    assert children == ()
    assert record == {"root": "src", "fan_out": 2, "edges": []}
