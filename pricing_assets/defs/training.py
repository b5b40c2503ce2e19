"""Global training assets (unpartitioned, re-run on top of all batches): ``products``,
``listing_features``, ``product_index`` + ``knn_features`` and ``feature_matrix``."""

import dagster as dg
import numpy as np
import pandas as pd

from data_contracts import FeatureMatrix, KnnFeatures, ListingFeatures, Products
from pricing_assets.checks import contract_spec, enforce_contract
from pricing_assets.defs.common import all_batches_in, batch_order, merge_batches, preview, stopwatch
from pricing_assets.defs.embeddings import embedding_key
from pricing_assets.lib.embeddings.registry import enabled_models, indexed_text_model
from pricing_assets.lib.features.training_data import DEDUP_RULE
from pricing_assets.lib.models.registry import stacked_model
from pricing_assets.resources import CrossValidationResource
from pricing_assets.settings import current_registry

GROUP = "training"


class ProductsConfig(dg.Config):
    """``products`` run config (Launchpad; the nightly schedule sets it)."""

    #: retrain even when a serving model fitted on exactly these labels exists (by default only new or
    #: changed labels start a retrain).
    retrain_unchanged: bool = False


class KnnConfig(dg.Config):
    """Neighbour counts of the kNN search (``knn_search``: ``product_index``, ``knn_features``, ``knn_reference``)."""

    knn_k: int = 10
    knn_unit_k: int = 20


class FeatureMatrixConfig(dg.Config):
    """Embedding PCA columns in ``feature_matrix``, per text / image model. Off by default: the kNN
    features already carry what the embeddings say about price, and LightGBM overfits the raw
    components (measured: docs/experiments.md, "Embedding PCA columns in `feature_matrix`")."""

    text_pca_components: int = 0
    image_pca_components: int = 0


def build_products_asset(registry: dict) -> dg.AssetsDefinition:
    """``products`` over the per-row assets it loads (items, images, OCR) and, as dependencies it only
    checks, every enabled embedding asset of ``registry``: a batch counts only when all of them are
    stored for it (``product_embeddings`` reads them next), and a batch whose embeddings land later (a
    retried run) makes ``products`` run again."""
    emb_keys = {s.name: embedding_key(s) for s in enabled_models(registry)}

    @dg.multi_asset(
        # optional output, and can_subset so that its contract check is optional too: a run that stores
        # nothing reports no check (dagster-io/dagster#27399)
        outs={
            "products": dg.AssetOut(
                group_name=GROUP,
                io_manager_key="parquet_io_manager",
                is_required=False,
                description="The training set: every labeled product of every complete batch, with its CV fold.",
            )
        },
        ins={name: all_batches_in(name) for name in ("catalog_items", "product_images", "ocr_text")},
        deps=list(emb_keys.values()),
        check_specs=[contract_spec("products")],
        can_subset=True,
    )
    def products(
        context: dg.AssetExecutionContext,
        config: ProductsConfig,
        cv: CrossValidationResource,
        catalog_items,
        product_images,
        ocr_text,
    ):
        """The training set: every *labeled* product of every complete batch, one row per ``sample_id``
        (latest batch wins), joined with its image status/metadata and OCR text, plus its CV ``fold``.
        Products without a price are priced per batch by ``batch_predictions`` and never enter training.

        Stored only when the labels changed: when the last stored training set has exactly these labeled
        rows (same ``labeled_fingerprint``, its data version) nothing is stored and nothing downstream
        re-runs, so an unlabeled batch costs no retrain (``ProductsConfig.retrain_unchanged`` forces one;
        the nightly schedule sets it). It compares with its own last version, not with the promoted
        model: a retrain the model gate refused is not repeated on every batch. A batch missing one of its per-row assets, embeddings included (its run failed or
        is still running), is left out and listed."""
        from pricing_assets.lib.features.training_data import assemble_training_set
        from pricing_assets.lib.serving.scoring import labeled_fingerprint

        with stopwatch() as t:
            ts = assemble_training_set(
                merge_batches(context, catalog_items, "catalog_items"),
                merge_batches(context, product_images, "product_images"),
                merge_batches(context, ocr_text, "ocr_text"),
                batch_order(context),
                cv.n_folds,
                cv.seed,
                stored={name: set(context.instance.get_materialized_partitions(key)) for name, key in emb_keys.items()},
            )
            skipped, replaced, n_unlabeled, out = ts.skipped_batches, ts.replaced, ts.unlabeled_rows, ts.frame
            if skipped:
                context.log.warning(
                    f"products: batches {skipped} are incomplete (a per-row asset is missing) and are left out"
                )
            if out is None:
                context.log.info(
                    f"products: no labeled row in the complete batches ({n_unlabeled} without a price; incomplete batches: "
                    f"{skipped}); nothing to train on yet"
                )
                return
            fingerprint = labeled_fingerprint(out, cv.n_folds, cv.seed)
        from pricing_assets.instance_state import latest_metadata_value

        previous = latest_metadata_value(context.instance, "products", "labeled_fingerprint")  # its own last version
        if previous == fingerprint and not config.retrain_unchanged:
            context.log.info(
                f"products: the training set already holds these {len(out)} labeled rows (fingerprint {fingerprint[:8]}); "
                "nothing stored, no retrain (ProductsConfig.retrain_unchanged forces one)"
            )
            return
        _contract = enforce_contract(
            out, Products, "products"
        )  # before storing: a violation raises, nothing is written
        yield dg.Output(
            out,
            output_name="products",
            data_version=dg.DataVersion(fingerprint),  # the labeled set: equal versions, equal labels
            metadata={
                "rows": len(out),
                "labeled_rows": len(out),
                "unlabeled_rows_left_to_batch_predictions": n_unlabeled,
                "labeled_fingerprint": fingerprint,
                "retrain_reason": "forced (retrain_unchanged)"
                if previous == fingerprint
                else ("first training set" if previous is None else "labels changed"),
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

    return products


@dg.asset(group_name=GROUP, io_manager_key="parquet_io_manager", check_specs=[contract_spec("listing_features")])
def listing_features(context: dg.AssetExecutionContext, products: pd.DataFrame):
    """Brand, coarse category, pack count / IPQ, quantities in canonical units (g, ml, count), text stats."""
    from pricing_assets.lib.features.listing import build_listing_features

    with stopwatch() as t:
        feats = build_listing_features(products)
    top = feats["brand"].value_counts().head(10)
    _contract = enforce_contract(
        feats, ListingFeatures, "listing_features"
    )  # before storing: a violation raises, nothing is written
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


def build_product_embeddings_asset(registry: dict) -> dg.AssetsDefinition:
    """``product_embeddings``: every batch of every enabled embedding asset, aligned to ``products``."""
    specs = enabled_models(registry)

    @dg.asset(
        group_name=GROUP,
        io_manager_key="io_manager",
        ins={"products": dg.AssetIn("products"), **{f"emb__{s.name}": all_batches_in(embedding_key(s)) for s in specs}},
    )
    def product_embeddings(context: dg.AssetExecutionContext, products: pd.DataFrame, **embeddings):
        """Every enabled embedding model's vectors for the products, in ``products`` order
        (``lib.features.training_data.ProductEmbeddings``, pickled): the one place the per-batch embedding assets
        are merged; the kNN index, the feature matrix, the fusion MLP and the signal report read it."""
        from pricing_assets.lib.features.training_data import align_embeddings

        with stopwatch() as t:
            frames = [
                (s.name, s.modality, s.dim, merge_batches(context, embeddings[f"emb__{s.name}"], f"emb__{s.name}"))
                for s in specs
            ]
            out = align_embeddings(frames, products["sample_id"])
        coverage = {
            name: {"modality": modality, "dim": int(vec.shape[1]), "rows_with_vector": int(has.sum())}
            for name, modality, vec, has in out.models
        }
        missing_text = {
            n: len(out.sample_ids) - c["rows_with_vector"]
            for n, c in coverage.items()
            if c["modality"] == "text" and c["rows_with_vector"] < len(out.sample_ids)
        }
        if missing_text:
            raise ValueError(
                f"product_embeddings: products without a text embedding {missing_text}: materialise the embedding assets of their batches"
            )
        return dg.Output(
            out,
            metadata={
                "dagster/row_count": len(out.sample_ids),
                "models": dg.MetadataValue.json(coverage),
                "mb": round(sum(v.nbytes for _, _, v, _ in out.models) / 2**20, 1),
                "seconds": round(t(), 2),
            },
        )

    return product_embeddings


def build_training_assets(registry: dict) -> list:
    """``product_embeddings``, ``product_index``/``knn_features`` and ``feature_matrix``."""
    indexed = indexed_text_model(registry)

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
                description="kNN neighbour-price features of the labeled rows, out-of-fold.",
            ),
            "knn_reference": dg.AssetOut(
                io_manager_key="io_manager",
                group_name=GROUP,
                description="What a new product's kNN features are searched in: the labeled products' vectors, prices, "
                "quantities and the TF-IDF vectorizers fitted on their texts (lib.retrieval.reference.KnnReference), pickled.",
            ),
        },
        ins={
            "products": dg.AssetIn("products"),
            "listing_features": dg.AssetIn("listing_features"),
            "product_embeddings": dg.AssetIn("product_embeddings"),
        },
        check_specs=[contract_spec("knn_features")],
    )
    def knn_search(
        context: dg.AssetExecutionContext,
        config: KnnConfig,
        cv: CrossValidationResource,
        products: pd.DataFrame,
        listing_features: pd.DataFrame,
        product_embeddings,
    ):
        """The kNN search over the labeled products: the reference a new product is searched in
        (``knn_reference``), every labeled row's out-of-fold neighbour-price features (``knn_features``)
        and the FAISS index of the first text model's vectors (``product_index``)."""
        from pricing_assets.lib.retrieval.knn import build_knn_features
        from pricing_assets.lib.retrieval.reference import fit_knn_reference
        from pricing_assets.lib.retrieval.search import build_index

        with stopwatch() as t:
            embs = product_embeddings.aligned_to(products["sample_id"])
            ref = fit_knn_reference(
                products, listing_features, embs, k=config.knn_k, unit_k=config.knn_unit_k, n_folds=cv.n_folds
            )
            knn = build_knn_features(
                products,
                listing_features,
                embs,
                k=config.knn_k,
                unit_k=config.knn_unit_k,
                n_folds=cv.n_folds,
                reference=ref,
            )
            lab = products["is_labeled"].to_numpy()
            index = build_index(ref.text[indexed.name])  # row i = reference row i (the labeled products)
        log_price = np.log1p(products["price"].to_numpy(dtype=float))
        first = [c for c in knn.columns if c.startswith("knn_")][:2]
        corr = float(np.corrcoef(knn.loc[lab, first[0]], log_price[lab])[0, 1]) if lab.sum() > 2 else float("nan")
        _contract = enforce_contract(
            knn, KnnFeatures, "knn_features"
        )  # before storing: a violation raises, nothing is written
        yield dg.Output(
            index,
            output_name="product_index",
            metadata={
                "vectors": int(index.ntotal),
                "dim": int(index.d),
                "model": indexed.name,
                # IndexFlatIP (exact) up to lib.retrieval.search.APPROXIMATE_ABOVE references, IndexIVFFlat past it
                "kind": type(index).__name__,
            },
        )
        yield dg.Output(
            ref,
            output_name="knn_reference",
            metadata={
                "labeled_rows": ref.n,
                "views": dg.MetadataValue.json([*ref.text, *ref.sparse, *(f"image:{n}" for n in ref.image)]),
                "vocabulary": dg.MetadataValue.json(
                    {n: (0 if v is None else len(v.vocabulary_)) for n, v in ref.vectorizers.items()}
                ),
            },
        )
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

    @dg.multi_asset(
        outs={
            "feature_matrix": dg.AssetOut(
                io_manager_key="parquet_io_manager",
                group_name=GROUP,
                description="Model input of the labeled rows: engineered, target-encoding, kNN, stacked ridge, image features.",
            ),
            "feature_space": dg.AssetOut(
                io_manager_key="io_manager",
                group_name=GROUP,
                description="What feature_matrix fitted on the labeled rows (target-encoding maps, embedding PCAs, "
                "title ridge, column order; lib.features.training_data.FeatureSpace), pickled: a new product's features.",
            ),
        },
        ins={
            "products": dg.AssetIn("products"),
            "listing_features": dg.AssetIn("listing_features"),
            "knn_features": dg.AssetIn("knn_features"),
            "stacked_predictions": dg.AssetIn(stacked_model().predictions_asset),
            "product_embeddings": dg.AssetIn("product_embeddings"),
        },
        check_specs=[contract_spec("feature_matrix")],
    )
    def feature_matrix(
        context: dg.AssetExecutionContext,
        config: FeatureMatrixConfig,
        cv: CrossValidationResource,
        products: pd.DataFrame,
        listing_features: pd.DataFrame,
        knn_features: pd.DataFrame,
        stacked_predictions: pd.DataFrame,
        product_embeddings,
    ):
        """Model input: engineered features, OOF target encodings, kNN features, the TF-IDF ridges'
        OOF log-price predictions on the full text and on the title (stacked: out-of-fold for labeled
        rows, like the kNN features); embedding PCA when `FeatureMatrixConfig` asks for it (off by default)."""
        from pricing_assets.lib.features.training_data import build_feature_matrix_and_space

        with stopwatch() as t:
            fm, groups, space = build_feature_matrix_and_space(
                products,
                listing_features,
                knn_features,
                stacked_predictions,
                product_embeddings.aligned_to(products["sample_id"]),
                text_pca_components=config.text_pca_components,
                image_pca_components=config.image_pca_components,
                seed=cv.seed,
            )
        _contract = enforce_contract(
            fm, FeatureMatrix, "feature_matrix"
        )  # before storing: a violation raises, nothing is written
        yield dg.Output(
            space,
            output_name="feature_space",
            metadata={
                "columns": len(space.columns),
                "target_encoding_keys": dg.MetadataValue.json(
                    {n: len(m) for n, (m, _) in space.target_encoding.items()}
                ),
                "title_ridge_folds": len(space.title_ridge),
            },
        )
        yield dg.Output(
            fm,
            output_name="feature_matrix",
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

    return [build_product_embeddings_asset(registry), knn_search, feature_matrix]


@dg.definitions
def training_defs() -> dg.Definitions:
    """The labeled training set, its features and the kNN index (registry-driven)."""
    registry = current_registry()
    return dg.Definitions(assets=[build_products_asset(registry), listing_features, *build_training_assets(registry)])
