"""The code location loads, and its asset graph has the expected shape (keys, groups, partitions,
blocking contract checks, GPU pool, IO managers). A renamed asset or lost dependency fails here, and
any other change of an asset spec fails the snapshot test until the snapshot is regenerated
(``pricing_tests/asset_snapshot.py``)."""

import inspect
import json
import os
import subprocess
import sys

import dagster as dg
import pytest

from pricing_assets.definitions import build_defs
from pricing_assets.lib.embeddings.registry import load_registry
from pricing_assets.settings import load_settings
from pricing_tests.asset_snapshot import SNAPSHOT, UPDATE_ENV, diff_snapshots, graph_snapshot, write_snapshot
from pricing_tests.helpers import TEXT_KEY

PER_ROW = {
    "raw_catalog": "ingest",
    "catalog_quarantine": "ingest",
    "catalog_items": "ingest",
    "product_images": "images",
    "ocr_text": "images",
    TEXT_KEY: "embeddings",
    "embeddings/image/effnet_lite0": "embeddings",
    "batch_predictions": "scoring",
}
GLOBAL = {
    "products": "training",
    "listing_features": "training",
    "product_index": "training",
    "knn_features": "training",
    "feature_matrix": "training",
    "feature_space": "training",
    "knn_reference": "training",
    "embedding_signal_report": "training",
    "lightgbm_model": "models",
    "lightgbm_predictions": "models",
    "lightgbm_distributional_model": "models",
    "lightgbm_distributional_predictions": "models",
    "blend_weights": "models",
    "price_blend": "models",
    "serving_model": "serving",
    "price_predictions": "serving",
    "evaluation_report": "serving",
}


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    home = tmp_path_factory.mktemp("defs_home")
    return build_defs(load_settings({"DAGSTER_HOME": str(home)})).resolve_asset_graph()


def test_expected_assets_groups_and_partitioning(graph):
    keys = {k.to_user_string(): k for k in graph.get_all_asset_keys()}
    for name, group in {**PER_ROW, **GLOBAL}.items():
        assert name in keys, f"missing asset {name}"
        node = graph.get(keys[name])
        assert node.group_name == group, (name, node.group_name)
        partitioned = node.partitions_def is not None
        assert partitioned == (name in PER_ROW), name
        if partitioned:
            assert node.partitions_def.name == "catalog_batches"


def test_every_enabled_registry_model_has_an_asset(graph):
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    for spec in load_registry().values():
        assert (f"embeddings/{spec.modality}/{spec.name}" in keys) == spec.enabled, spec.name


def test_lineage(graph):
    def parents(name):
        return {k.to_user_string() for k in graph.get(dg.AssetKey.from_user_string(name)).parent_keys}

    assert parents("catalog_items") == {"raw_catalog"}
    assert parents("ocr_text") == {"product_images"}
    assert parents(TEXT_KEY) == {"catalog_items", "ocr_text"}
    assert parents("embeddings/image/effnet_lite0") == {"product_images"}
    # every per-row asset the training side reads: a batch counts only once all are stored, and a retry
    # that stores a batch's embeddings alone starts products again
    assert parents("products") == {
        "catalog_items",
        "product_images",
        "ocr_text",
        TEXT_KEY,
        "embeddings/image/effnet_lite0",
    }
    assert "feature_matrix" in parents("lightgbm_model")
    assert parents("lightgbm_distributional_model") == {"feature_matrix"}
    assert "lightgbm_distributional_predictions" in parents("price_blend")
    assert {
        "price_blend",
        "knn_reference",
        "feature_space",
        "lightgbm_model",
        "lightgbm_distributional_model",
        "tfidf_ridge_model",
    } <= parents("serving_model")
    assert "fusion_mlp_model" not in parents("serving_model")  # opt-in: PRICING_FUSION_MLP=1
    assert {"serving_model", "catalog_items", "product_images", "ocr_text", TEXT_KEY} <= parents("batch_predictions")
    assert parents("price_predictions") == {"batch_predictions", "products"}


def test_every_data_asset_has_a_blocking_contract_check(graph):
    checks = {ck.asset_key.to_user_string(): ck for ck in graph.asset_check_keys if ck.name == "contract"}
    # index / fitted objects, report tables
    exempt = {
        "product_index",
        "knn_reference",
        "feature_space",
        "lightgbm_model",
        "evaluation_report",
        "embedding_signal_report",
    }
    for name in {**PER_ROW, **GLOBAL}:
        if name in exempt or name.endswith("_model"):
            continue
        assert name in checks, f"{name} has no contract check"
        assert graph.get_check_spec(checks[name]).blocking, name


def test_heavy_steps_use_the_gpu_pool(graph):
    for name in ("ocr_text", TEXT_KEY, "embeddings/image/effnet_lite0"):
        assert graph.get(dg.AssetKey.from_user_string(name)).pools == {"gpu"}, name


def test_code_location_loads_without_heavy_imports():
    code = (
        "import sys, pricing_assets.definitions as d; "
        "heavy = [m for m in ('torch', 'faiss', 'lightgbm', 'transformers', 'onnxruntime', 'rapidocr', 'sentence_transformers') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"heavy modules imported at load: {out.stdout}"


def test_asset_graph_matches_the_reviewed_snapshot(graph):
    actual = graph_snapshot(graph)
    if os.environ.get(UPDATE_ENV) == "1":
        write_snapshot(actual)
    expected = json.loads(SNAPSHOT.read_text())
    diff = diff_snapshots(expected, actual)
    assert not diff, (
        f"the asset graph differs from {SNAPSHOT.name} ({len(diff)} change(s)); if intended, regenerate with "
        f"{UPDATE_ENV}=1 and commit the diff:\n" + "\n".join(diff)
    )


def test_snapshot_diff_names_a_changed_dependency(graph):
    """The comparison the snapshot test relies on catches a changed dependency, a new asset and a
    changed automation condition (each named)."""
    base = graph_snapshot(graph)
    changed = json.loads(json.dumps(base))
    before = base["price_predictions"]["deps"]
    changed["price_predictions"]["deps"] = [d for d in before if d != "products"]  # lost its ``products`` dependency
    changed["brand_new"] = dict(changed["products"])
    changed["products"]["automation_condition"] = "eager"
    diff = diff_snapshots(base, changed)
    assert "products" in before
    assert f"~ price_predictions.deps: {before!r} -> {changed['price_predictions']['deps']!r}" in diff
    assert "+ asset brand_new" in diff
    assert any(line.startswith("~ products.automation_condition:") for line in diff)
    assert len(diff) == 3, diff


def test_every_asset_has_kinds_owners_code_version_and_contract_schema(graph):
    missing = {}
    for key in graph.get_all_asset_keys():
        node, name = graph.get(key), key.to_user_string()
        gaps = [
            what
            for what, ok in (("kinds", node.kinds), ("owners", node.owners), ("code_version", node.code_version))
            if not ok
        ]
        if any(ck.name == "contract" for ck in node.check_keys) and "dagster/column_schema" not in node.metadata:
            gaps.append("dagster/column_schema")
        if len(node.kinds) > 3:
            gaps.append(f"{len(node.kinds)} kinds")  # Dagster's limit for an asset's kinds (the UI shows three)
        if gaps:
            missing[name] = gaps
    assert not missing, missing


def test_code_version_follows_the_lib_code_an_asset_runs(monkeypatch):
    """An asset's code version hashes its body and the ``pricing_assets.lib`` modules it imports,
    transitively: an edit in ``lib/images/fetch.py`` changes ``product_images``' version, not ``raw_catalog``'s."""
    import pricing_assets.asset_policy as policy
    from pricing_assets.defs import images, ingest

    assert {"images.fetch", "images.decode", "images.url_safety"} <= set(
        policy.lib_modules_of(inspect.getsource(images.product_images.op.compute_fn.decorated_fn))
    )
    before = {a: policy.code_version_of(a) for a in (images.product_images, ingest.raw_catalog)}
    real = policy.lib_module_source
    monkeypatch.setattr(
        policy, "lib_module_source", lambda name: real(name) + ("\n# edited" if name == "images.decode" else "")
    )
    after = {a: policy.code_version_of(a) for a in (images.product_images, ingest.raw_catalog)}
    assert (
        after[images.product_images] != before[images.product_images]
    )  # images.decode is imported by lib/images/fetch.py
    assert after[ingest.raw_catalog] == before[ingest.raw_catalog]


def test_fusion_mlp_is_opt_in(tmp_path):
    """Off by default; ``PRICING_FUSION_MLP=1`` adds its two assets, feeds the blend and ``serving_model``."""
    settings = load_settings({"DAGSTER_HOME": str(tmp_path), "PRICING_FUSION_MLP": "1"})
    graph = build_defs(settings).resolve_asset_graph()

    def parents(name):
        return {k.to_user_string() for k in graph.get(dg.AssetKey.from_user_string(name)).parent_keys}

    assert "fusion_mlp_predictions" in parents("price_blend") and "fusion_mlp_model" in parents("serving_model")
    assert graph.get(dg.AssetKey("fusion_mlp_model")).pools == {"gpu"}


def test_the_environment_selection_reaches_the_code_location():
    from pricing_assets.definitions import build_defs
    from pricing_assets.lib.embeddings.registry import RegistryError
    from pricing_assets.settings import load_settings

    settings = load_settings({"PRICING_EMBEDDING_MODELS": "minilm_l6,effnet_lite0", "DAGSTER_HOME": "/tmp/x"})
    assert settings.embedding_models == ("minilm_l6", "effnet_lite0")
    keys = {k.to_user_string() for k in build_defs(settings).resolve_asset_graph().get_all_asset_keys()}
    assert {"embeddings/text/minilm_l6", "embeddings/image/effnet_lite0"} <= keys
    assert not any(k.startswith("embeddings/text/") and k != "embeddings/text/minilm_l6" for k in keys)
    with pytest.raises(RegistryError, match="not in the registry"):
        build_defs(load_settings({"PRICING_EMBEDDING_MODELS": "nope", "DAGSTER_HOME": "/tmp/x"}))
