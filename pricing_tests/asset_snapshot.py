"""A reviewable snapshot of every asset spec of the code location (``pricing_tests/snapshots/asset_graph.json``).

What is recorded per asset: key, group, deps, partitions, automation condition (labels), IO manager,
pools, checks (name, blocking), kinds and owners. Not recorded: descriptions, code versions and
metadata, which change with every edit and say nothing about the graph's shape.

Regenerate after a *reviewed* change: ``PRICING_UPDATE_SNAPSHOT=1 .venv/bin/pytest -q pricing_tests/test_definitions.py -k snapshot``
and commit the JSON diff with the change.
"""

import json
from pathlib import Path

import dagster as dg

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"
UPDATE_ENV = "PRICING_UPDATE_SNAPSHOT"


def describe_condition(c: dg.AutomationCondition | None) -> str | None:
    """An automation condition as its labels: ``label`` or ``Type(child, ...)`` (``None`` when unset)."""
    if c is None:
        return None
    return c.get_label() or f"{type(c).__name__}({', '.join(describe_condition(ch) for ch in c.children)})"


def graph_snapshot(graph) -> dict[str, dict]:
    """``{asset key: spec summary}`` of an ``AssetGraph``, sorted, JSON-serialisable."""
    out = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        out[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitions": node.partitions_def.name
            if node.partitions_def is not None and hasattr(node.partitions_def, "name")
            else (type(node.partitions_def).__name__ if node.partitions_def else None),
            "automation_condition": describe_condition(node.automation_condition),
            "io_manager": node.io_manager_key,
            "pools": sorted(node.pools or []),
            "checks": sorted(
                f"{ck.name}{' (blocking)' if graph.get_check_spec(ck).blocking else ''}" for ck in node.check_keys
            ),
            "kinds": sorted(node.kinds),
            "owners": sorted(node.owners),
        }
    return out


def diff_snapshots(expected: dict, actual: dict) -> list[str]:
    """Human-readable differences, one line each: added / removed assets, changed fields."""
    lines = [f"+ asset {k}" for k in sorted(actual.keys() - expected.keys())]
    lines += [f"- asset {k}" for k in sorted(expected.keys() - actual.keys())]
    for k in sorted(expected.keys() & actual.keys()):
        for field in sorted(expected[k].keys() | actual[k].keys()):
            if expected[k].get(field) != actual[k].get(field):
                lines.append(f"~ {k}.{field}: {expected[k].get(field)!r} -> {actual[k].get(field)!r}")
    return lines


def write_snapshot(snapshot: dict, path: Path = SNAPSHOT) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
