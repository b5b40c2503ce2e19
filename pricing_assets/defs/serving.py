"""Serving stage: ``serving_model`` (every fitted artifact, versioned), ``batch_predictions`` (each
batch's products without a price, scored by it, no refit), ``price_predictions`` (every unlabeled
product's latest price) and ``evaluation_report``."""

import dagster as dg
import numpy as np
import pandas as pd

from data_contracts import BatchPredictions, ModelPredictions, PricePredictions
from data_contracts.serving import PriceDrivers, PriceExplanations, ServedAccuracy, ServedPrices
from pricing_assets.checks import contract_spec, enforce_contract
from pricing_assets.defs.common import all_batches_in, batch_order, merge_batches, preview, stopwatch
from pricing_assets.defs.models import price_models
from pricing_assets.lib.catalog.batches import latest_batch_wins
from pricing_assets.lib.embeddings.registry import enabled_models, indexed_text_model
from pricing_assets.lib.models.registry import PriceModelSpec
from pricing_assets.lib.serving.drivers import DEFAULT_METHOD
from pricing_assets.partitions import catalog_batches
from pricing_assets.resources import CrossValidationResource, DeviceResource
from pricing_assets.settings import current_registry, current_settings

GROUP = "serving"
#: The batch-partitioned scoring asset's group (partitioned and unpartitioned assets never share a run).
SCORING_GROUP = "scoring"


def scoring_ins(specs: list) -> dict:
    """What a batch's scoring reads: its catalog rows, photos and OCR, the promoted ``serving_model``
    and the batch's stored embeddings of every enabled model ``specs`` (``emb__<name>``)."""
    from pricing_assets.defs.embeddings import embedding_key

    return {
        "catalog_items": dg.AssetIn("catalog_items"),
        "product_images": dg.AssetIn("product_images"),
        "ocr_text": dg.AssetIn("ocr_text"),
        "serving_model": dg.AssetIn("serving_model"),
        **{f"emb__{s.name}": dg.AssetIn(embedding_key(s)) for s in specs},
    }


def unpriced_batch_rows(specs: list, catalog_items, product_images, ocr_text, embeddings: dict):
    """A batch's products without a price as scoring reads them: ``(items, listing_features,
    embeddings)``, items the latest row per ``sample_id`` joined with its photo and OCR facts (the row
    ``products`` builds), embeddings ``(name, modality, (n, d) float32, has (n,) bool)`` per enabled
    model ``specs`` from the stored frames ``embeddings[f"emb__{name}"]``."""
    from pricing_assets.lib.features.listing import build_listing_features
    from pricing_assets.lib.features.training_data import embedding_matrix, join_images_and_ocr

    items, _ = latest_batch_wins(catalog_items[catalog_items["price"].isna()])
    items = join_images_and_ocr(items, product_images, ocr_text)
    embs = [
        (s.name, s.modality, *embedding_matrix(embeddings[f"emb__{s.name}"], items["sample_id"], s.dim)) for s in specs
    ]
    return items, build_listing_features(items), embs


def build_serving_model_asset(registry: dict, specs: list[PriceModelSpec]) -> dg.AssetsDefinition:
    """``serving_model``: the fitted artifacts of one training run in one versioned object
    (``lib.serving.scoring.ServingModel``), packaged from its inputs only; built only when ``price_blend``
    passed its blocking checks (contract and ``model_gate``), and building it *promotes* that blend:
    its OOF predictions are stored beside it as ``promoted_blend`` (the champion the next retrain's
    model gate reads, a small parquet frame), and every batch is re-scored with it."""
    embedding_specs = enabled_models(registry)
    indexed = indexed_text_model(registry)

    @dg.multi_asset(
        name="serving_model",
        outs={
            "serving_model": dg.AssetOut(
                group_name=GROUP,
                io_manager_key="io_manager",
                description="Every fitted artifact of one training run, versioned (lib.serving.scoring.ServingModel).",
            ),
            "promoted_blend": dg.AssetOut(
                group_name=GROUP,
                io_manager_key="parquet_io_manager",
                description="The promoted blend's OOF predictions: the champion the next retrain's model gate compares with.",
            ),
        },
        check_specs=[contract_spec("promoted_blend")],
        ins={
            "products": dg.AssetIn("products"),
            "knn_reference": dg.AssetIn("knn_reference"),
            "product_index": dg.AssetIn("product_index"),
            "feature_space": dg.AssetIn("feature_space"),
            "price_blend": dg.AssetIn("price_blend"),
            "blend_weights": dg.AssetIn("blend_weights"),
            "price_intervals": dg.AssetIn("price_intervals"),
            **{s.model_asset: dg.AssetIn(s.model_asset) for s in specs},
        },
    )
    def serving_model(
        context: dg.AssetExecutionContext,
        cv: CrossValidationResource,
        products: pd.DataFrame,
        knn_reference,
        product_index,
        feature_space,
        price_blend: pd.DataFrame,
        blend_weights: pd.DataFrame,
        price_intervals,
        **fitted,
    ):
        """Everything ``batch_predictions`` needs to price a new product, fitted on the labeled rows of
        ``products`` (their fingerprint names the version): kNN reference and the FAISS index of its
        text vectors (``product_index``, searched as stored), feature space, every blended model and
        ``blend_weights``, as stored by the training assets."""
        from pricing_assets.lib.models.metrics import smape
        from pricing_assets.lib.serving.scoring import ServingModel, labeled_fingerprint, model_version, now_utc

        fingerprint = labeled_fingerprint(products, cv.n_folds, cv.seed)
        fitted_at = now_utc()
        model = ServingModel(
            version=model_version(fingerprint, fitted_at),
            fitted_at=fitted_at.isoformat(timespec="seconds"),
            labeled_rows=len(products),
            fingerprint=fingerprint,
            embedding_models=[(s.name, s.modality, s.dim) for s in embedding_specs],
            knn=knn_reference,
            indexes={indexed.name: product_index},
            space=feature_space,
            models={s.name: fitted[s.model_asset] for s in specs},
            intervals=price_intervals,
            blend=dict(zip(blend_weights["model"], blend_weights["weight"].astype(float))),
            oof_smape={
                **dict(zip(blend_weights["model"], blend_weights["oof_smape"].astype(float))),
                "blend": round(smape(price_blend["price"], price_blend["pred_price"]), 3),
            },
        )
        context.log.info(f"serving_model {model.version}: {model.labeled_rows} labeled rows, blend {model.blend}")
        # the model version is the data version: each batch_predictions materialization records the
        # model that priced it, and the UI flags the batches a newer model has not re-scored yet
        champion = price_blend[["sample_id", "fold", "price", "pred_price"]].reset_index(drop=True)
        _contract = enforce_contract(champion, ModelPredictions, "promoted_blend")  # before storing
        yield dg.Output(
            model,
            output_name="serving_model",
            data_version=dg.DataVersion(model.version),
            metadata={
                "model_version": model.version,
                "fitted_at": model.fitted_at,
                "labeled_rows": model.labeled_rows,
                "labeled_fingerprint": fingerprint,
                "blend_weights": dg.MetadataValue.json(model.blend),
                "oof_smape": dg.MetadataValue.json(model.oof_smape),
                "embedding_models": dg.MetadataValue.json([n for n, _, _ in model.embedding_models]),
            },
        )
        # promoted once the model is stored: outputs are written in the order they are yielded
        yield dg.Output(champion, output_name="promoted_blend", metadata={"model_version": model.version})
        yield _contract

    return serving_model


def build_batch_predictions_asset(registry: dict) -> dg.AssetsDefinition:
    """``batch_predictions``: one batch's products without a price, scored by ``serving_model``."""

    specs = enabled_models(registry)

    @dg.asset(
        group_name=SCORING_GROUP,
        io_manager_key="parquet_io_manager",
        partitions_def=catalog_batches,
        ins=scoring_ins(specs),
        check_specs=[contract_spec("batch_predictions")],
    )
    def batch_predictions(
        context: dg.AssetExecutionContext,
        device: DeviceResource,
        catalog_items: pd.DataFrame,
        product_images: pd.DataFrame,
        ocr_text: pd.DataFrame,
        serving_model,
        **kwargs,
    ):
        """Price this batch's products that have no price with the current ``serving_model``: features
        from the fitted artifacts (kNN reference, TF-IDF vectorizers, target-encoding maps), the
        models' predictions and the blend, no refit (``lib.serving.scoring.score_new_rows``); the text
        embedding view is searched in the FAISS index the model was promoted with (``product_index``),
        not rebuilt. Each row names
        the model version that priced it; re-run for every batch when a new model is promoted."""
        from pricing_assets.lib.serving.scoring import score_new_rows

        with stopwatch() as t:
            items, listing, embs = unpriced_batch_rows(specs, catalog_items, product_images, ocr_text, kwargs)
            scored = score_new_rows(serving_model, items, listing, embs, device=device.resolve())
        _contract = enforce_contract(scored, BatchPredictions, "batch_predictions")  # before storing
        seconds = t()
        yield dg.Output(
            scored,
            metadata={
                "model_version": serving_model.version,
                "labeled_rows_in_batch": int(catalog_items["price"].notna().sum()),
                "median_price_usd": round(float(scored["price"].median()), 2) if len(scored) else 0.0,
                "seconds": round(seconds, 2),
                "rows_per_s": round(len(scored) / max(seconds, 1e-9), 1),
                "preview": preview(scored),
            },
        )
        yield _contract

    return batch_predictions


def build_price_explanations_asset(registry: dict) -> dg.AssetsDefinition:
    """``price_explanations``: per batch, the labeled comparables of every priced product, searched in
    the promoted ``serving_model``'s reference: its stored FAISS index (``product_index``) and TF-IDF rows."""
    from pricing_assets.defs.embeddings import embedding_key

    primary = indexed_text_model(registry)

    @dg.asset(
        group_name=SCORING_GROUP,
        io_manager_key="parquet_io_manager",
        partitions_def=catalog_batches,
        ins={
            "batch_predictions": dg.AssetIn("batch_predictions"),
            "catalog_items": dg.AssetIn("catalog_items"),
            "serving_model": dg.AssetIn("serving_model"),
            "products": dg.AssetIn("products"),
            "text_embeddings": dg.AssetIn(embedding_key(primary)),
        },
        check_specs=[contract_spec("price_explanations")],
    )
    def price_explanations(
        context: dg.AssetExecutionContext,
        batch_predictions: pd.DataFrame,
        catalog_items: pd.DataFrame,
        serving_model,
        products: pd.DataFrame,
        text_embeddings: pd.DataFrame,
    ):
        """The ``k`` (5) labeled products most like each product this batch priced, with the price each
        was labeled with, its similarity and the view that found it, searched in the reference of the
        model that priced them (``serving_model``: the text-embedding index it was promoted with, no
        rebuild, and the full-text TF-IDF view)."""
        from pricing_assets.lib.catalog.batches import latest_batch_wins
        from pricing_assets.lib.features.training_data import embedding_matrix
        from pricing_assets.lib.retrieval.reference import transform_view, view_texts
        from pricing_assets.lib.serving.comparables import find_comparables

        ref = serving_model.knn
        with stopwatch() as t:
            ids = batch_predictions["sample_id"].astype(str)
            names = products.assign(sample_id=products["sample_id"].astype(str)).set_index("sample_id")["item_name"]
            reference = pd.DataFrame(
                {
                    "sample_id": ref.sample_ids,
                    "item_name": names.reindex(ref.sample_ids).fillna("").to_numpy(),
                    "price": np.expm1(ref.log_price),  # the price the model learned from (USD)
                }
            )
            vectors, query_rows = np.zeros((0, primary.dim), dtype=np.float32), None  # no product priced here
            if len(ids):
                items, _ = latest_batch_wins(catalog_items.assign(sample_id=catalog_items["sample_id"].astype(str)))
                items = items.set_index("sample_id").loc[ids].reset_index()
                vectors, _ = embedding_matrix(text_embeddings, ids, primary.dim)
                query_rows = transform_view(ref.vectorizers["tfidf"], view_texts(items)["tfidf"])
            out = find_comparables(
                ids.to_numpy(),
                (serving_model.indexes or {}).get(primary.name, ref.text[primary.name]),
                f"text:{primary.name}",
                vectors,
                ref.sparse["tfidf"],
                query_rows,
                reference,
            )
        _contract = enforce_contract(out, PriceExplanations, "price_explanations")  # before storing
        yield dg.Output(
            out,
            metadata={
                "priced_products": int(ids.nunique()),
                "model_version": serving_model.version,
                "median_top1_similarity": round(float(out.loc[out["rank"] == 1, "similarity"].median()), 4)
                if len(out)
                else 0.0,
                "views": dg.MetadataValue.json({str(k): int(v) for k, v in out["view"].value_counts().items()}),
                "seconds": round(t(), 2),
                "preview": preview(out),
            },
        )
        yield _contract

    return price_explanations


class DriversConfig(dg.Config):
    """``price_drivers`` run config: how the contributions are computed (``lib.serving.drivers``):
    ``path`` (decision paths, the default: linear in the model's trees) or ``treeshap`` (Shapley
    values, 8-35x slower; docs/experiments.md, "Price drivers by decision path")."""

    method: str = DEFAULT_METHOD


def build_price_drivers_asset(registry: dict) -> dg.AssetsDefinition:
    """``price_drivers``: per batch, the features that move each priced product's price most."""

    specs = enabled_models(registry)

    @dg.asset(
        group_name=SCORING_GROUP,
        io_manager_key="parquet_io_manager",
        partitions_def=catalog_batches,
        ins={"batch_predictions": dg.AssetIn("batch_predictions"), **scoring_ins(specs)},
        check_specs=[contract_spec("price_drivers")],
    )
    def price_drivers(
        context: dg.AssetExecutionContext,
        config: DriversConfig,
        batch_predictions: pd.DataFrame,
        catalog_items: pd.DataFrame,
        product_images: pd.DataFrame,
        ocr_text: pd.DataFrame,
        serving_model,
        **kwargs,
    ):
        """The 5 drivers of every price ``batch_predictions`` served in this batch: LightGBM's per-row
        feature contributions on the log price (by decision path; TreeSHAP with ``method: treeshap``), grouped into readable features with their
        values and shown as multiplicative effects ("pack quantity = 12 -> x1.8";
        ``lib.serving.drivers``). The features are built as the scoring built them, from the same
        stored inputs and model (no refit); ``base_price * prod(effects of every feature)`` is the
        model's served ``pred_lightgbm``."""
        from pricing_assets.lib.serving.scoring import explain_new_rows

        stale = sorted(set(batch_predictions["model_version"].astype(str)) - {serving_model.version})
        if stale:
            raise dg.Failure(
                f"batch_predictions of batch {context.partition_key} were priced by model {stale[0]}, "
                f"serving_model is {serving_model.version}: re-score the batch first (`pricing materialize`)"
            )
        with stopwatch() as t:
            items, listing, embs = unpriced_batch_rows(specs, catalog_items, product_images, ocr_text, kwargs)
            out = explain_new_rows(serving_model, items, listing, embs, method=config.method)
        _contract = enforce_contract(out, PriceDrivers, "price_drivers")  # before storing
        seconds = t()
        top = out.loc[out["rank"] == 1, "feature"].value_counts().head(8)
        yield dg.Output(
            out,
            metadata={
                "priced_products": int(out["sample_id"].nunique()),
                "model_version": serving_model.version,
                "explained_model": str(out["model"].iloc[0]) if len(out) else "none",
                "method": config.method,
                "top_driver_counts": dg.MetadataValue.json({str(k): int(v) for k, v in top.items()}),
                "seconds": round(seconds, 2),
                "rows_per_s": round(len(items) / max(seconds, 1e-9), 1),
                "preview": preview(out),
            },
        )
        yield _contract

    return price_drivers


@dg.asset(
    group_name=GROUP,
    io_manager_key="parquet_io_manager",
    ins={"batch_predictions": all_batches_in("batch_predictions"), "products": dg.AssetIn("products")},
    check_specs=[contract_spec("price_predictions")],
)
def price_predictions(context: dg.AssetExecutionContext, batch_predictions, products: pd.DataFrame):
    """Every product without a price, once: its latest batch's ``batch_predictions`` row (USD) with
    that batch and the model version that priced it; a product labeled since (in ``products``) is
    left out. ``pricing predictions --out`` writes the competition format (``sample_id,price``)."""
    scored = merge_batches(context, batch_predictions, "batch_predictions")
    latest, replaced = latest_batch_wins(scored, batch_order(context))
    labeled_since = latest["sample_id"].isin(set(products["sample_id"].astype(str)))
    interval = [c for c in ("price_low", "price_high") if c in latest]
    out = latest.loc[~labeled_since, ["sample_id", "price", *interval, "batch", "model_version"]].reset_index(drop=True)
    out["sample_id"] = out["sample_id"].astype(str)
    versions = out["model_version"].value_counts()
    _contract = enforce_contract(
        out, PricePredictions, "price_predictions"
    )  # before storing: a violation raises, nothing is written
    yield dg.Output(
        out,
        metadata={
            "rows": len(out),
            "model_versions": dg.MetadataValue.json({str(k): int(v) for k, v in versions.items()}),
            # "none": nothing to price (every product has its price); "mixed": some batch awaits re-scoring
            "model_version": str(versions.index[0])
            if len(versions) == 1
            else ("none" if len(versions) == 0 else "mixed"),
            "labeled_since_left_out": int(labeled_since.sum()),
            "replaced_by_later_batch": replaced,
            "median_price_usd": round(float(out["price"].median()), 2) if len(out) else 0.0,
            "min_price_usd": round(float(out["price"].min()), 2) if len(out) else 0.0,
            "max_price_usd": round(float(out["price"].max()), 2) if len(out) else 0.0,
            "preview": preview(out),
        },
    )
    yield _contract


@dg.asset(
    group_name=SCORING_GROUP,
    io_manager_key="served_log_io_manager",
    partitions_def=catalog_batches,
    ins={"batch_predictions": dg.AssetIn("batch_predictions"), "products": dg.AssetIn("products")},
    check_specs=[contract_spec("served_prices")],
)
def served_prices(context: dg.AssetExecutionContext, batch_predictions: pd.DataFrame, products: pd.DataFrame):
    """The served-price log of this batch: every price ``batch_predictions`` served, with its model
    version and the UTC time it was served; a product whose true price is already known (in
    ``products``) is not served, as ``price_predictions`` leaves it out. Each model version's prices
    of a batch are kept (a batch re-scored by a new model adds to its history; ``served_log`` IO
    manager), so the prices served can be scored when the true prices arrive (``served_accuracy``)."""
    from pricing_assets.lib.serving.accuracy import served_rows
    from pricing_assets.lib.serving.scoring import now_utc

    known = batch_predictions["sample_id"].astype(str).isin(set(products["sample_id"].astype(str)))
    out = served_rows(batch_predictions[~known], context.partition_key, now_utc().isoformat(timespec="seconds"))
    _contract = enforce_contract(out, ServedPrices, "served_prices")  # before storing
    versions = sorted(set(out["model_version"]))
    yield dg.Output(
        out,
        metadata={
            "model_version": versions[0] if versions else "none",
            "labeled_since_left_out": int(known.sum()),
            "median_price_usd": round(float(out["price"].median()), 2) if len(out) else 0.0,
            "preview": preview(out),
        },
    )
    yield _contract


@dg.asset(
    group_name=GROUP,
    io_manager_key="parquet_io_manager",
    ins={"served_prices": all_batches_in("served_prices"), "products": dg.AssetIn("products")},
    check_specs=[contract_spec("served_accuracy")],
)
def served_accuracy(context: dg.AssetExecutionContext, served_prices, products: pd.DataFrame):
    """Realized accuracy: every served price whose product's true price has arrived since (a labeled
    row in ``products``), scored per model version and batch (SMAPE, median absolute % error, interval
    coverage once prices carry one). The metadata's figures per model version are what
    ``pricing status`` shows; ``served_smape`` is plotted over time in the UI."""
    from pricing_assets.lib.serving.accuracy import accuracy_by_model_version
    from pricing_assets.lib.serving.accuracy import served_accuracy as score_served

    served = merge_batches(context, served_prices, "served_prices")  # every model version of every batch
    out = score_served(served, products)
    per_version = accuracy_by_model_version(served, products)
    _contract = enforce_contract(out, ServedAccuracy, "served_accuracy")  # before storing
    latest = per_version[-1] if per_version else None
    yield dg.Output(
        out,
        metadata={
            "served_rows": len(served),
            "served_rows_with_true_price": int(sum(v["rows"] for v in per_version)),
            "model_versions": dg.MetadataValue.json(per_version),
            **(
                {"served_smape": latest["smape"], "served_smape_model_version": latest["model_version"]}
                if latest
                else {}
            ),
            "preview": preview(out),
        },
    )
    yield _contract


def build_evaluation_asset(specs: list[PriceModelSpec]) -> dg.AssetsDefinition:
    """``evaluation_report``: OOF SMAPE per model, blend and price bin; worst rows; plots. It reads the
    blend's weights (``blend_weights``), not ``price_blend``, so a retrain the model gate rejects (a
    failed blocking check on ``price_blend``) is evaluated too: the gate blocks promotion, not evaluation."""

    @dg.asset(
        group_name=GROUP,
        io_manager_key="parquet_io_manager",
        ins={
            "blend_weights": dg.AssetIn("blend_weights"),
            "products": dg.AssetIn("products"),
            **{s.predictions_asset: dg.AssetIn(s.predictions_asset) for s in specs},
        },
    )
    def evaluation_report(
        context: dg.AssetExecutionContext, blend_weights: pd.DataFrame, products: pd.DataFrame, **preds
    ):
        """SMAPE table (one row per model + blend), with plots as PNG in the markdown metadata."""
        from pricing_assets.lib.models.blend import align_predictions, blended_predictions
        from pricing_assets.lib.models.evaluation import (
            plot_error_by_bin,
            plot_interval_coverage,
            plot_pred_vs_actual,
            png_markdown,
            smape_table,
            worst_predictions,
        )
        from pricing_assets.lib.models.metrics import smape_by_bin
        from pricing_assets.lib.serving.intervals import DEFAULT_LEVEL, coverage_by_quintile, cross_fitted_intervals

        by_model = {s.name: preds[s.predictions_asset] for s in specs}
        base, model_prices = align_predictions(by_model)
        # the same frame price_blend stored
        price_blend = blended_predictions(base, model_prices, sorted(by_model), blend_weights)
        table = smape_table({**by_model, "blend": price_blend})
        # the served intervals' honest coverage: each fold's rows calibrated on the other folds
        price = price_blend["price"].to_numpy()
        low, high = cross_fitted_intervals(
            price, price_blend["pred_price"].to_numpy(), model_prices, sorted(by_model), price_blend["fold"].to_numpy()
        )
        intervals = coverage_by_quintile(price, low, high)
        worst = worst_predictions(price_blend, products.set_index("sample_id")["item_name"])
        blend_smape = float(table.loc[table["model"] == "blend", "oof_smape"].iloc[0])
        bins = smape_by_bin(price_blend["price"].to_numpy(), price_blend["pred_price"].to_numpy())
        yield dg.Output(
            table,
            metadata={
                "blend_oof_smape": blend_smape,
                "model_oof_smape": dg.MetadataValue.json(dict(zip(table["model"], table["oof_smape"].astype(float)))),
                "rows_per_price_bin": dg.MetadataValue.json({b["bin"]: b["rows"] for b in bins}),
                "smape_table": dg.MetadataValue.md(table.to_markdown(index=False)),
                "worst_predictions": dg.MetadataValue.md(
                    worst[["sample_id", "price", "pred_price", "row_smape", "item_name"]].to_markdown(index=False)
                ),
                "pred_vs_actual": dg.MetadataValue.md(
                    png_markdown(plot_pred_vs_actual(price_blend, f"blend, OOF SMAPE {blend_smape:.2f}"))
                ),
                "error_by_price_bin": dg.MetadataValue.md(png_markdown(plot_error_by_bin(table))),
                "interval_level": DEFAULT_LEVEL,
                "interval_oof_coverage": float(intervals["coverage"].iloc[-1]),
                "interval_median_width": float(intervals["median_width"].iloc[-1]),
                "intervals_by_price_quintile": dg.MetadataValue.md(intervals.to_markdown(index=False)),
                "interval_coverage_plot": dg.MetadataValue.md(
                    png_markdown(plot_interval_coverage(intervals, DEFAULT_LEVEL))
                ),
            },
        )

    return evaluation_report


@dg.definitions
def serving_defs() -> dg.Definitions:
    """The promoted serving model, each batch's scores, the published prices and the evaluation report."""
    registry, specs = current_registry(), price_models(current_settings())
    return dg.Definitions(
        assets=[
            build_serving_model_asset(registry, specs),
            build_batch_predictions_asset(registry),
            build_price_explanations_asset(registry),
            build_price_drivers_asset(registry),
            price_predictions,
            served_prices,
            served_accuracy,
            build_evaluation_asset(specs),
        ]
    )
