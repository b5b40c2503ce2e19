"""Declarative automation of the global assets, evaluated with ``dg.evaluate_automation_conditions``
on the real asset graph: materialisations and check results are reported as runless events, so no
asset body runs.

Scenarios (issue #15): a new complete batch after a failed one requests a run; a failed upstream
blocking check requests none; nothing new requests none. The condition Dagster's docs start from,
``eager() & all_deps_blocking_checks_passed()``, is evaluated on the same events to show the freeze
it had. Issue #18: a batch only starts ``products`` (which stores nothing when the labels did not
change) and its own ``batch_predictions``; a promoted ``serving_model`` re-scores every batch.
"""

import dagster as dg
import pytest

from pricing_assets.definitions import build_defs
from pricing_assets.lib.embeddings.registry import load_registry
from pricing_assets.partitions import CATALOG_BATCHES
from pricing_assets.settings import load_settings

OLD_AUTOMATION = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()


def _defs(condition, tmp_path) -> dg.Definitions:
    """The real graph with this project's conditions (``condition`` None), or with ``condition`` on
    every asset that has one here (the old policy)."""
    settings = load_settings({"DAGSTER_HOME": str(tmp_path / "home")})
    registry = {k: v for k, v in load_registry().items() if v.enabled}
    defs = build_defs(settings, registry)
    if condition is not None:
        assets = list(
            dg.map_asset_specs(
                lambda spec: (
                    spec
                    if spec.automation_condition is None
                    else spec.replace_attributes(automation_condition=condition)
                ),
                defs.assets,
            )
        )
        return dg.Definitions(assets=assets, resources=defs.resources)
    return defs


class Scenario:
    """An ephemeral instance with the graph's per-row and global keys, and helpers that report what a
    run would have recorded."""

    def __init__(self, defs: dg.Definitions):
        self.defs = defs
        self.instance = dg.DagsterInstance.ephemeral()
        graph = defs.resolve_asset_graph()
        self.per_row = [
            k
            for k in graph.get_all_asset_keys()
            if graph.get(k).partitions_def is not None and graph.get(k).group_name != "scoring"
        ]
        self.scoring = [k for k in graph.get_all_asset_keys() if graph.get(k).group_name == "scoring"]
        self.global_ = [k for k in graph.get_all_asset_keys() if graph.get(k).partitions_def is None]
        self.checks = {k: [c for c in graph.asset_check_keys if c.asset_key == k] for k in graph.get_all_asset_keys()}
        self.cursor = None
        self.checked = set()

    def _report(self, key: dg.AssetKey, partition: str | None, checks_pass: bool = True) -> None:
        self.instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))
        if partition is not None and (key, partition) in self.checked:
            return  # runless check results of a partition are stored once (one row per run id, here "")
        self.checked.add((key, partition))
        for ck in self.checks[key]:
            self.instance.report_runless_asset_event(
                dg.AssetCheckEvaluation(
                    asset_key=key,
                    check_name=ck.name,
                    passed=checks_pass,
                    partition=partition,
                    severity=dg.AssetCheckSeverity.ERROR,
                )
            )

    def batch(self, name: str, complete: bool = True) -> None:
        """Register batch ``name``; a complete one has every per-row partition, a failed one none."""
        self.instance.add_dynamic_partitions(CATALOG_BATCHES, [name])
        if complete:
            for k in self.per_row:
                self._report(k, name)

    def global_run(self) -> None:
        """A retrain and the re-scoring of every complete batch."""
        for k in self.global_:
            self._report(k, None)
        for b in self.instance.get_dynamic_partitions(CATALOG_BATCHES):
            if all(b in self.instance.get_materialized_partitions(k) for k in self.per_row):
                for k in self.scoring:
                    self._report(k, b)

    def tick(self) -> set[str]:
        """Evaluate once; the asset keys requested this tick (``batch_predictions[B]`` per partition)."""
        res = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance, cursor=self.cursor)
        self.cursor = res.cursor
        out = set()
        for r in res.results:
            if r.true_subset.size == 0:
                continue
            if r.key in self.scoring:
                out |= {f"{r.key.to_user_string()}[{p}]" for p in r.true_subset.expensively_compute_partition_keys()}
            else:
                out.add(r.key.to_user_string())
        return out


@pytest.fixture(scope="module")
def defs_new(tmp_path_factory):
    return _defs(None, tmp_path_factory.mktemp("auto_new"))


@pytest.fixture(scope="module")
def defs_old(tmp_path_factory):
    return _defs(OLD_AUTOMATION, tmp_path_factory.mktemp("auto_old"))


def _after_a_failed_batch(defs) -> tuple[Scenario, set[str]]:
    s = Scenario(defs)
    s.batch("b1")
    s.global_run()
    assert s.tick() == set()  # everything up to date
    s.batch("broken", complete=False)  # its run failed: no per-row partition stored
    assert s.tick() == set()  # a failed batch alone is no new data
    s.batch("b2")
    return s, s.tick()


def test_new_batch_after_a_failed_one_requests_the_global_assets(defs_new):
    s, requested = _after_a_failed_batch(defs_new)
    # products (which stores nothing when the labels did not change) and the new batch's scoring;
    # never the failed batch's
    assert requested == {
        "products",
        "batch_predictions[b2]",
        "served_prices[b2]",
        "price_explanations[b2]",
        "price_drivers[b2]",
    }
    s._report(dg.AssetKey("products"), None)  # the batch brought new labels: products stored
    retrain = s.tick()
    assert retrain == {k.to_user_string() for k in s.global_} - {"products"}  # one run: the whole training side


def test_a_batch_retrains_only_through_products(defs_new):
    """An unlabeled batch: ``products`` is requested and, its run storing nothing (labels unchanged),
    nothing of the training side is requested, then or on any later tick; the batch is scored, then
    published. Found by ``make soak``: the request of ``products`` left a pending trigger on the
    training assets that fired a full retrain a few ticks later."""
    s = Scenario(defs_new)
    s.batch("b1")
    s.global_run()
    assert s.tick() == set()
    s.batch("b2")
    assert s.tick() == {
        "products",
        "batch_predictions[b2]",
        "served_prices[b2]",
        "price_explanations[b2]",
        "price_drivers[b2]",
    }
    assert s.tick() == set()  # the requested runs are under way: products ran and stored nothing
    for k in s.scoring:  # the scoring run stored the batch's prices and their log
        s._report(k, "b2")
    requested = s.tick()
    assert requested == {"price_predictions", "served_accuracy"}, requested
    s._report(dg.AssetKey("price_predictions"), None)
    s._report(dg.AssetKey("served_accuracy"), None)
    assert s.tick() == set()
    s.batch("b3")  # a later unlabeled batch: the same again, still no retrain
    assert s.tick() == {
        "products",
        "batch_predictions[b3]",
        "served_prices[b3]",
        "price_explanations[b3]",
        "price_drivers[b3]",
    }
    assert s.tick() == set()
    assert s.tick() == set()


def test_a_first_labeled_batch_trains_then_scores_then_publishes(defs_new):
    """A fresh instance: nothing is published before a batch is scored (``price_predictions`` has no
    input yet), nothing is scored before a model is promoted."""
    s = Scenario(defs_new)
    assert s.tick() == set()  # the sensor was on before the first delivery
    s.batch("b1")
    assert s.tick() == {"products"}
    s._report(dg.AssetKey("products"), None)
    requested = s.tick()
    assert "serving_model" in requested and "lightgbm_model" in requested
    assert "price_predictions" not in requested  # no batch scored yet
    for k in s.global_:
        if k.to_user_string() not in ("products", "price_predictions"):
            s._report(k, None)
    assert s.tick() == {"batch_predictions[b1]", "served_prices[b1]", "price_explanations[b1]", "price_drivers[b1]"}
    for k in s.scoring:
        s._report(k, "b1")
    assert s.tick() == {"price_predictions", "served_accuracy"}


def test_a_promoted_model_rescores_every_batch(defs_new):
    s = Scenario(defs_new)
    s.batch("b1")
    s.batch("b2")
    s.global_run()
    assert s.tick() == set()
    s._report(dg.AssetKey("serving_model"), None)  # a retrain promoted a new model
    requested = s.tick()
    assert {"batch_predictions[b1]", "batch_predictions[b2]"} <= requested
    assert "products" not in requested and "lightgbm_model" not in requested


def test_the_old_condition_froze_on_the_failed_batch(defs_old):
    s, requested = _after_a_failed_batch(defs_old)
    assert {r for r in requested if "[" not in r} == set()  # no global asset: retraining froze


def test_nothing_new_requests_nothing(defs_new):
    s, requested = _after_a_failed_batch(defs_new)
    assert requested
    s.global_run()
    assert s.tick() == set()
    assert s.tick() == set()


def test_failed_blocking_check_upstream_requests_no_downstream_run(defs_new):
    s = Scenario(defs_new)
    s.batch("b1")
    s.global_run()
    s.tick()
    # a retrain whose blend failed its blocking model gate: price_blend and blend_weights stored, the check failed
    s._report(dg.AssetKey("price_blend"), None, checks_pass=False)
    s._report(dg.AssetKey("blend_weights"), None)
    requested = s.tick()
    assert "serving_model" not in requested  # not promoted: the batches keep the current model's prices
    assert "evaluation_report" in requested  # the gate blocks promotion, not evaluation
    assert not any(r.startswith("batch_predictions") for r in requested)
    # the same materialisation with passing checks does promote it
    s._report(dg.AssetKey("price_blend"), None, checks_pass=True)
    assert "serving_model" in s.tick()


def test_a_failed_contract_on_a_batch_partition_holds_its_consumers(defs_new):
    """Contracts are enforced before storing, so this state needs a stored partition whose blocking
    check failed (as a check added later could leave): ``products`` reads ``catalog_items`` and must
    not run, nor anything downstream of it, nor the batch's scoring."""
    s = Scenario(defs_new)
    s.batch("b1")
    s.global_run()
    s.tick()
    s.instance.add_dynamic_partitions(CATALOG_BATCHES, ["b2"])
    for k in s.per_row:
        s._report(k, "b2", checks_pass=k.to_user_string() != "catalog_items")
    requested = s.tick()
    assert "products" not in requested and "listing_features" not in requested and "tfidf_ridge_model" not in requested
    assert "batch_predictions[b2]" not in requested
    # the other training assets read the embeddings too, but only a new products (labels) starts them
    assert "product_index" not in requested and "embedding_signal_report" not in requested


def test_a_failed_rerun_of_a_stored_batch_does_not_freeze(defs_new, tmp_path):
    """A real run of ``raw_catalog`` for an already stored batch fails (a corrected file that is
    broken): its planned checks resolve to "execution failed", which must not hold the global assets
    when the next good batch lands."""
    from pricing_assets.lib.catalog.batches import store_batch

    s = Scenario(defs_new)
    s.batch("b1")
    s.global_run()
    s.tick()
    bad = tmp_path / "b1.csv"
    bad.write_text("sample_id,catalog_content,image_link\n1,Item Name: a,\n2,Item Name: b,,x,y\n")
    store_batch(str(bad), defs_new.resources["storage"].batches_dir(), "b1")
    res = dg.materialize(
        list(defs_new.assets),
        instance=s.instance,
        resources=dict(defs_new.resources),
        partition_key="b1",
        selection=dg.AssetSelection.assets("raw_catalog", "catalog_quarantine"),
        raise_on_error=False,
    )
    assert not res.success
    (latest,) = s.instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("raw_catalog"), "contract"), limit=1
    )
    assert latest.run_id == res.run_id and latest.status.value == "PLANNED"  # planned in a failed run: never passed
    s.batch("b2")
    assert "products" in s.tick()
    s._report(dg.AssetKey("products"), None)
    assert {"price_predictions", "serving_model"} <= s.tick()


def test_a_missing_global_input_holds_its_consumers(defs_new):
    """Found by ``make soak``: with eager's missing-dependency gate removed altogether, ``price_blend``
    ran while ``fusion_mlp_predictions`` had never been built (its run had failed) and could not load
    its inputs. Only missing *batch partitions* are ignored; a missing global input still holds (here
    ``lightgbm_distributional_predictions``; the fusion MLP is opt-in now)."""
    s = Scenario(defs_new)
    s.batch("b1")
    for k in s.global_:
        if not k.to_user_string().startswith("lightgbm_distributional"):
            s._report(k, None)
    s.tick()
    s._report(dg.AssetKey("lightgbm_predictions"), None)  # a consumer's input changes
    requested = s.tick()
    assert "price_blend" not in requested


def test_a_batch_completed_on_the_tick_after_products_was_requested_is_not_lost(defs_new):
    """``make soak-faults``: a batch run was killed after OCR (its embeddings missing), marked failed,
    and ``products`` was requested on the incomplete batch; the run retry stored the embeddings before
    the next tick. With eager()'s reset (the request, reported on that next tick) the update was
    swallowed and nothing retrained on the batch; here ``products`` runs once more."""
    s = Scenario(defs_new)
    s.batch("b1")
    s.global_run()
    assert s.tick() == set()
    s.instance.add_dynamic_partitions(CATALOG_BATCHES, ["b2"])
    emb = [k for k in s.per_row if k.path[0] == "embeddings"]
    for k in s.per_row:
        if k not in emb:
            s._report(k, "b2")  # the killed run stored items, photos and OCR, not the embeddings
    assert "products" in s.tick()  # the batch's run is no longer in progress: products runs (stores nothing)
    for k in emb:
        s._report(k, "b2")  # the retry stores the embeddings before the next tick
    assert "products" in s.tick()  # ... and products runs again on the complete batch
    assert "products" not in s.tick()  # once: the next request resets as usual
