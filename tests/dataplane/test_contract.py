"""The typed messages between the bridge worker and the node actors, and their JSON forms."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dataplane.contract import (
    CastPlan,
    Hop,
    TargetResult,
    fail_subtree,
    flatten,
    results_from_wire,
    results_to_wire,
)

pytestmark = pytest.mark.unit

TREE = Hop(
    1,
    "n1",
    "10.0.0.1",
    9001,
    (
        Hop(2, "n2", "10.0.0.2", 9002, (Hop(4, "n4", "10.0.0.4", 9004),)),
        Hop(3, "n3", "10.0.0.3", 9003),
    ),
)


def through_json(raw: Any) -> Any:
    """What the peer gets: the offer travels as JSON text."""
    return json.loads(json.dumps(raw))


def test_a_hop_tree_round_trips_through_its_json_form() -> None:
    assert Hop.from_wire(through_json(TREE.to_wire())) == TREE


def test_walk_visits_parents_before_children_in_order() -> None:
    assert [h.target for h in TREE.walk()] == [1, 2, 4, 3]
    assert [h.target for h in flatten([TREE, Hop(5, "n5", "10.0.0.5", 9005)])] == [1, 2, 4, 3, 5]


def test_a_hop_without_a_node_name_is_named_by_its_target() -> None:
    hop = Hop.from_wire({"target": "8", "address": "10.0.0.8", "port": "9008"})
    assert hop == Hop(8, "8", "10.0.0.8", 9008)


@pytest.mark.parametrize(
    "raw",
    [
        {"node": "n1", "address": "10.0.0.1", "port": 1},  # no target
        {"target": 1, "node": "n1", "port": 1},  # no address
        {"target": None, "node": "n1", "address": "10.0.0.1", "port": 1},
        {"target": "one", "node": "n1", "address": "10.0.0.1", "port": 1},
        {"target": 1, "node": "n1", "address": "10.0.0.1", "port": 1, "children": [5]},
        {"target": 1, "node": "n1", "address": "10.0.0.1", "port": 1, "children": [{"target": 2}]},
    ],
)
def test_a_malformed_hop_is_a_value_error(raw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Hop.from_wire(raw)


def test_results_round_trip_with_integer_target_ids() -> None:
    results = {
        1: TargetResult(status="completed", bytes_received=100, sha256="ab" * 32),
        2: TargetResult(status="failed", error="link to n2 failed: refused"),
        3: TargetResult(status="completed", udp_transport="unicast", udp_passes=2),
    }
    raw = through_json(results_to_wire(results))
    assert set(raw) == {"1", "2", "3"}
    assert raw["2"] == {"status": "failed", "error": "link to n2 failed: refused"}  # empty fields stay home
    assert results_from_wire(raw) == results


def test_results_from_a_newer_peer_keep_the_fields_this_side_knows() -> None:
    assert results_from_wire({"5": {"status": "skipped", "colour": "blue"}}) == {5: TargetResult(status="skipped")}


@pytest.mark.parametrize("raw", [None, [], "results"])
def test_results_that_are_not_an_object_are_a_value_error(raw: Any) -> None:
    with pytest.raises(ValueError):
        results_from_wire(raw)


def test_fail_subtree_gives_every_hop_below_the_same_reason() -> None:
    assert fail_subtree(TREE.children[0], "relay n1 failed") == {
        2: TargetResult(status="failed", error="relay n1 failed"),
        4: TargetResult(status="failed", error="relay n1 failed"),
    }
    cancelled = fail_subtree(TREE, "the cast was cancelled", status="cancelled")
    assert sorted(cancelled) == [1, 2, 3, 4]
    assert {r.status for r in cancelled.values()} == {"cancelled"}


def test_a_plan_targets_every_hop_of_its_forest() -> None:
    plan = CastPlan(transfer=1, name="a", dest_name="b", chunk_size=4096, sha256="", children=(TREE,))
    assert [h.node for h in plan.targets()] == ["n1", "n2", "n4", "n3"]
