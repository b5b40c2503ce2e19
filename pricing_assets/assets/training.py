"""Global training assets (unpartitioned, re-run on top of all batches): ``products``,
``brand_features``, ``product_index`` + ``knn_features`` and ``feature_matrix``."""

import dagster as dg
import numpy as np
import pandas as pd

from data_contracts import BrandFeatures, FeatureMatrix, KnnFeatures, Products
from pricing_assets.assets.common import all_batches_in, batch_order, complete_batches, merge_batches, preview, stopwatch
from pricing_assets.assets.embeddings import embedding_key
from pricing_assets.checks import contract_spec, enforce_contract
from pricing_assets.lib.training_data import DEDUP_RULE, latest_wins

GROUP = "training"


class TrainingConfig(dg.Config):
    """CV and feature settings (editable in the Launchpad, recorded with the run)."""

    n_folds: int = 5
    seed: int = 42
    knn_k: int = 10
    knn_unit_k: int = 20
    # Embedding PCA columns in feature_matrix, per text / image model. Off: the kNN features already
    # carry what the embeddings say about price, and LightGBM overfits the raw components. Measured on
    # the sample (5 grouped folds, seeds 42 / 7 / 123, 2 threads): MiniLM components 32 / 8 / 4 / 0 ->
    # LightGBM OOF SMAPE 54.54 / 54.28 / 54.21 / 54.17 (image PCA off in the last three; 0 better on
    # every seed and 4 of 5 folds); the distributional LightGBM 55.15 -> 54.88.
    text_pca_components: int = 0
    image_pca_components: int = 0


@dg.asset(
    group_name=GROUP,
    io_manager_key="parquet_io_manager",
    ins={name: all_batches_in(name) for name in ("catalog_items", "product_images", "ocr_text")},
    check_specs=[contract_spec("products")],
)
def products(
    context: dg.AssetExecutionContext, config: TrainingConfig, catalog_items, product_images, ocr_text
):
    """Every complete batch combined, one row per ``sample_id`` (latest batch wins), joined with its
    image status/metadata and OCR text, plus the CV ``fold`` of labeled rows (-1 for unlabeled).
    A batch missing one of its per-row assets (its run failed) is left out and listed in metadata."""
    from pricing_assets.lib.modeling import assign_folds

    with stopwatch() as t:
        merged, skipped = complete_batches(
            {name: merge_batches(context, value, name) for name, value in (("catalog_items", catalog_items), ("product_images", product_images), ("ocr_text", ocr_text))}
        )
        if skipped:
            context.log.warning(f"products: batches {skipped} are incomplete (a per-row asset is missing) and are left out")
        if merged["catalog_items"].empty:
            raise ValueError(f"products: no complete batch (incomplete: {skipped}); materialise the per-row assets first")
        items, replaced = latest_wins(merged["catalog_items"], batch_order(context))
        imgs, ocr = merged["product_images"], merged["ocr_text"]
        out = items.merge(imgs, on=["sample_id", "batch"], how="left", validate="one_to_one")
        out = out.merge(ocr, on=["sample_id", "batch"], how="left", validate="one_to_one", suffixes=("", "_ocr"))
        out["is_labeled"] = out["price"].notna()
        out["fold"] = -1
        lab = out["is_labeled"].to_numpy()
        if lab.sum() >= config.n_folds:
            out.loc[lab, "fold"] = assign_folds(out.loc[lab, "sample_id"], out.loc[lab, "image_link"], config.n_folds, config.seed)
    _contract = enforce_contract(out, Products, "products")  # before storing: a violation raises, nothing is written
    yield dg.Output(
        out,
        metadata={
            "rows": len(out),
            "labeled_rows": int(lab.sum()),
            "unlabeled_rows": int((~lab).sum()),
            "batches": len(set(out["batch"])),
            "replaced_by_later_batch": replaced,
            "incomplete_batches_skipped": dg.MetadataValue.json(skipped),
            "dedup_rule": DEDUP_RULE,
            "with_image": int((out["status"] == "ok").sum()),
            "seconds": round(t(), 2),
            "preview": preview(out[["sample_id", "batch", "item_name", "price", "fold", "status"]]),
        },
    )
    yield _contract


@dg.asset(group_name=GROUP, io_manager_key="parquet_io_manager", check_specs=[contract_spec("brand_features")])
def brand_features(context: dg.AssetExecutionContext, products: pd.DataFrame):
    """Brand, coarse category, pack count / IPQ, quantities in canonical units (g, ml, count), text stats."""
    from pricing_assets.lib.features import build_brand_features

    with stopwatch() as t:
        feats = build_brand_features(products)
    top = feats["brand"].value_counts().head(10)
    _contract = enforce_contract(feats, BrandFeatures, "brand_features")  # before storing: a violation raises, nothing is written
    yield dg.Output(
        feats,
        metadata={
            "rows": len(feats),
            "distinct_brands": int(feats["brand"].nunique()),
            "unknown_brand_share": round(float((feats["brand"] == "unknown").mean()), 4),
            "categories": dg.MetadataValue.json({k: int(v) for k, v in feats["category"].value_counts().items()}),
            "top_brands": dg.MetadataValue.json({k: int(v) for k, v in top.items()}),
            "rows_per_s": round(len(feats) / max(t(), 1e-9), 1),
            "preview": preview(feats),
        },
    )
    yield _contract


def _embeddings_in(registry) -> dict:
    return {f"emb__{s.name}": all_batches_in(embedding_key(s)) for s in registry.values() if s.enabled}


def build_training_assets(registry: dict) -> list:
    """``product_index``/``knn_features`` and ``feature_matrix``, wired to every enabled embedding asset."""
    specs = {s.name: s for s in registry.values() if s.enabled}

    def _embeddings(context, kwargs, frame_ids):
        """``(name, modality, vectors, has)`` per enabled model, aligned to ``frame_ids``."""
        from pricing_assets.lib.training_data import embedding_matrix

        out = []
        for name, spec in specs.items():
            emb = merge_batches(context, kwargs[f"emb__{name}"], f"emb__{name}")
            out.append((name, spec.modality, *embedding_matrix(emb, frame_ids, spec.dim)))
        return out

    @dg.multi_asset(
        outs={
            "product_index": dg.AssetOut(
                io_manager_key="faiss_io_manager",
                group_name=GROUP,
                description="FAISS inner-product index over labeled products' text embeddings (row i = i-th labeled row of products).",
            ),
            "knn_features": dg.AssetOut(
                io_manager_key="parquet_io_manager",
                group_name=GROUP,
                description="kNN neighbour-price features: out-of-fold for labeled rows, against all labeled rows for unlabeled ones.",
            ),
        },
        ins={"products": dg.AssetIn("products"), "brand_features": dg.AssetIn("brand_features"), **_embeddings_in(registry)},
        check_specs=[contract_spec("knn_features")],
    )
    def product_index(
        context: dg.AssetExecutionContext, config: TrainingConfig, products: pd.DataFrame, brand_features: pd.DataFrame, **kwargs
    ):
        from pricing_assets.lib.knn import build_index, build_knn_features

        with stopwatch() as t:
            embs = _embeddings(context, kwargs, products["sample_id"])
            knn = build_knn_features(products, brand_features, embs, k=config.knn_k, unit_k=config.knn_unit_k, n_folds=config.n_folds)
            lab = products["is_labeled"].to_numpy()
            primary = next(e for e in embs if e[1] == "text")
            index = build_index(primary[2][lab])
        log_price = np.log1p(products["price"].to_numpy(dtype=float))
        first = [c for c in knn.columns if c.startswith("knn_")][:2]
        corr = float(np.corrcoef(knn.loc[lab, first[0]], log_price[lab])[0, 1]) if lab.sum() > 2 else float("nan")
        _contract = enforce_contract(knn, KnnFeatures, "knn_features")  # before storing: a violation raises, nothing is written
        yield dg.Output(index, output_name="product_index", metadata={"vectors": int(index.ntotal), "dim": int(index.d), "model": primary[0]})
        yield dg.Output(
            knn,
            output_name="knn_features",
            metadata={
                "rows": len(knn),
                "k": config.knn_k,
                f"corr({first[0]}, log_price)": round(corr, 4),
                "seconds": round(t(), 2),
                "preview": preview(knn),
            },
        )
        yield _contract

    @dg.asset(
        group_name=GROUP,
        io_manager_key="parquet_io_manager",
        ins={
            "products": dg.AssetIn("products"),
            "brand_features": dg.AssetIn("brand_features"),
            "knn_features": dg.AssetIn("knn_features"),
            "tfidf_ridge_predictions": dg.AssetIn("tfidf_ridge_predictions"),
            **_embeddings_in(registry),
        },
        check_specs=[contract_spec("feature_matrix")],
    )
    def feature_matrix(
        context: dg.AssetExecutionContext,
        config: TrainingConfig,
        products: pd.DataFrame,
        brand_features: pd.DataFrame,
        knn_features: pd.DataFrame,
        tfidf_ridge_predictions: pd.DataFrame,
        **kwargs,
    ):
        """Model input: engineered features, OOF target encodings, kNN features, the TF-IDF ridges'
        OOF log-price predictions on the full text and on the title (stacked: out-of-fold for labeled
        rows, like the kNN features); embedding PCA when `TrainingConfig` asks for it (off by default)."""
        from pricing_assets.lib.training_data import build_feature_matrix

        with stopwatch() as t:
            fm, groups = build_feature_matrix(
                products, brand_features, knn_features, tfidf_ridge_predictions, _embeddings(context, kwargs, products["sample_id"]),
                text_pca_components=config.text_pca_components, image_pca_components=config.image_pca_components, seed=config.seed,
            )
        _contract = enforce_contract(fm, FeatureMatrix, "feature_matrix")  # before storing: a violation raises, nothing is written
        yield dg.Output(
            fm,
            metadata={
                "rows": len(fm),
                "labeled_rows": int((fm["fold"] >= 0).sum()),
                "features": fm.shape[1] - 3,
                "feature_groups": dg.MetadataValue.json(groups),
                "seconds": round(t(), 2),
                "preview": preview(fm.iloc[:, :12]),
            },
        )
        yield _contract

    return [product_index, feature_matrix]
