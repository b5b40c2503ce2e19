"""Pricing new products with the fitted models, without refitting anything (the serving path).

Training (the global assets) fits, on the labeled products only: the kNN reference (vectors, prices,
TF-IDF vectorizers; ``lib.retrieval.reference.KnnReference``), the feature space (target-encoding maps, embedding PCAs,
title ridge; ``lib.features.training_data.FeatureSpace``), every price model of the registry
(``lib.models.registry``) and the blend weights. :class:`ServingModel` holds them all with a version;
:func:`score_new_rows` prices a batch of new products with them: the kNN features searched in the
reference, the feature rows built with the fitted space, each model's ``predict``, the blend.
"""

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd


def labeled_fingerprint(products: pd.DataFrame, n_folds: int, seed: int) -> str:
    """sha256 hex of the labeled rows (``sample_id``, ``price``, sorted by id) and the CV settings:
    equal fingerprints mean a retrain would learn from exactly the same labels.

    Args:
        products: rows with ``sample_id`` (str) and ``price`` (USD, NaN unlabeled).
        n_folds, seed: the CV settings the folds come from.
    """
    lab = products.loc[products["price"].notna(), ["sample_id", "price"]].astype({"sample_id": str})
    lab = lab.sort_values("sample_id", kind="stable")
    h = hashlib.sha256(f"folds={n_folds};seed={seed}\n".encode())
    h.update(pd.util.hash_pandas_object(lab, index=False).to_numpy().tobytes())
    return h.hexdigest()


def model_version(fingerprint: str, fitted_at: datetime) -> str:
    """``YYYYMMDDTHHMMSSZ-<first 8 hex of the labeled fingerprint>``: sortable, and names the labels."""
    return f"{fitted_at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{fingerprint[:8]}"


@dataclass
class ServingModel:
    """Every fitted artifact a new product's price needs, and what it was fitted on.

    Attributes:
        version: :func:`model_version`; every prediction carries it.
        fitted_at: ISO-8601 UTC time of the fit; labeled_rows: rows trained on;
        fingerprint: :func:`labeled_fingerprint` of those rows.
        embedding_models: ``(name, modality, dim)`` per enabled embedding model, in registry order.
        knn: ``lib.retrieval.reference.KnnReference``; space: ``lib.features.training_data.FeatureSpace``.
        indexes: text model name -> the stored FAISS index of ``knn.text[name]`` (the ``product_index``
            asset of the same training run), searched as it is; a text model without one (None: none,
            a model pickled before indexes were kept) is searched through an index built from ``knn``'s
            vectors.
        models: price-model name (``lib.models.registry.PRICE_MODELS``) -> its fitted model (what its
            spec's ``predict`` takes).
        blend: model name -> convex blend weight (blend order).
        oof_smape: model name (and ``blend``) -> OOF SMAPE of the training run (diagnostics).
        intervals: ``lib.serving.intervals.PriceIntervals`` of the training run (None: prices
            without an interval).
    """

    version: str
    fitted_at: str
    labeled_rows: int
    fingerprint: str
    embedding_models: list
    knn: object
    space: object
    models: dict
    blend: dict
    oof_smape: dict = field(default_factory=dict)
    intervals: object = None
    indexes: dict | None = None


def score_new_rows(
    model: ServingModel,
    items: pd.DataFrame,
    listing_features: pd.DataFrame,
    embeddings: list[tuple[str, str, np.ndarray, np.ndarray]],
    device: str = "cpu",
) -> pd.DataFrame:
    """Price n new products with ``model`` (no refit).

    Args:
        model: the fitted :class:`ServingModel`.
        items: n products (``products`` columns: ``sample_id``, ``item_name``, ``bullets``,
            ``description``, ``ipq_value``, ``ipq_unit``, ``width``, ``height``, ``n_bytes``,
            ``status``, ``n_lines``), unique ``sample_id``.
        listing_features: their ``lib.features.listing.build_listing_features`` rows.
        embeddings: ``(name, modality, vectors (n, d) float32, has (n,) bool)`` aligned to ``items``,
            for every model in ``model.embedding_models``.
        device: torch device of the fusion MLP (``cpu``/``cuda``).

    Returns:
        DataFrame (n rows, items' order): ``sample_id``, ``price`` (USD, the blend, > 0), with an interval
        model ``price_low`` / ``price_high`` (USD, ``price_low <= price <= price_high``), ``model_version``
        and ``pred_<model>`` (USD) per blended model.

    Raises:
        ValueError: when an embedding model of ``model`` is missing or the feature set differs.
    """
    from pricing_assets.lib.models.blend import apply_blend
    from pricing_assets.lib.models.registry import PRICE_MODELS, stacked_model, to_price

    items = items.reset_index(drop=True)
    sid = items["sample_id"].astype(str)
    _check_embeddings(model, embeddings, "score_new_rows")
    names = list(model.blend)
    absent = [n for n in names if n not in model.models or n not in PRICE_MODELS]
    if absent:
        raise ValueError(f"score_new_rows: blend needs models {absent} that model {model.version} does not hold")
    if len(items) == 0:
        return pd.DataFrame(
            {
                "sample_id": pd.Series([], dtype=str),
                "price": pd.Series([], dtype=float),
                **(
                    {c: pd.Series([], dtype=float) for c in ("price_low", "price_high")}
                    if model.intervals is not None
                    else {}
                ),
                "model_version": pd.Series([], dtype=str),
                **{f"pred_{m}": pd.Series([], dtype=float) for m in names},
            }
        )
    inputs, stacked_log = _model_inputs(model, items, listing_features, embeddings, device)
    stacked = stacked_model().name
    logs = {
        n: stacked_log if n == stacked else PRICE_MODELS[n].predict(model.models[n], inputs, device=device)
        for n in names
    }
    prices = {n: to_price(logs[n]) for n in names}
    blend = apply_blend(
        np.column_stack([prices[n] for n in names]), np.asarray([model.blend[n] for n in names], dtype=np.float64)
    )
    interval = {}
    if model.intervals is not None:
        low, high = model.intervals.bounds(
            np.log(blend), np.log(np.column_stack([prices[n] for n in model.intervals.models]))
        )
        interval = {"price_low": low, "price_high": high}
    return pd.DataFrame(
        {
            "sample_id": sid.to_numpy(),
            "price": blend,
            **interval,
            "model_version": model.version,
            **{f"pred_{n}": prices[n] for n in names},
        }
    )


def _check_embeddings(model: ServingModel, embeddings: list, caller: str) -> None:
    """ValueError when an embedding model ``model`` was trained with has no vectors in ``embeddings``."""
    given = {e[0] for e in embeddings}
    missing = [name for name, _, _ in model.embedding_models if name not in given]
    if missing:
        raise ValueError(f"{caller}: no embeddings of models {missing} (model {model.version} was trained with them)")


def _model_inputs(model: ServingModel, items: pd.DataFrame, listing_features: pd.DataFrame, embeddings: list, device):
    """What every price model of ``model`` reads of n new products (``items`` reset, unique ids), and the
    stacked model's ``log1p`` prices (a feature of the rows, (n,) float64): the kNN features searched
    in the reference (the text views through ``model.indexes``), the feature rows built with the fitted
    space, the catalog text."""
    from pricing_assets.lib.features.training_data import feature_rows_for_new_items
    from pricing_assets.lib.models.registry import ModelInputs, stacked_model
    from pricing_assets.lib.models.tfidf_ridge import product_text
    from pricing_assets.lib.retrieval.knn import knn_features_for_new_rows

    sid = items["sample_id"].astype(str)
    order = {name: i for i, (name, _, _) in enumerate(model.embedding_models)}
    embs = sorted((e for e in embeddings if e[0] in order), key=lambda e: order[e[0]])
    knn = knn_features_for_new_rows(model.knn, items, listing_features, embs, model.indexes or {})
    text = product_text(items).fillna("").astype(str).reset_index(drop=True)
    stacked = stacked_model()
    stacked_log = stacked.predict(model.models[stacked.name], ModelInputs(sid.to_numpy(), text=text), device=device)
    fm = feature_rows_for_new_items(model.space, items, listing_features, knn, stacked_log, embs)
    return ModelInputs(sid.to_numpy(), features=fm, text=text, embeddings=embs), stacked_log


def drivers_model(model: ServingModel) -> str | None:
    """The blended model of ``model`` whose prices the drivers attribute: of the models with a
    ``contributions`` adapter (``lib.models.registry.PriceModelSpec``), the one with the largest blend
    weight; None when no blended model attributes its prices."""
    from pricing_assets.lib.models.registry import PRICE_MODELS

    able = [n for n in model.blend if n in PRICE_MODELS and PRICE_MODELS[n].contributions and n in model.models]
    return max(able, key=lambda n: (model.blend[n], n)) if able else None


def explain_new_rows(
    model: ServingModel,
    items: pd.DataFrame,
    listing_features: pd.DataFrame,
    embeddings: list[tuple[str, str, np.ndarray, np.ndarray]],
    top: int | None = None,
    device: str = "cpu",
    method: str | None = None,
) -> pd.DataFrame:
    """The price drivers of n new products: the features that move the price of :func:`drivers_model`
    (LightGBM) most, as multiplicative effects (``lib.serving.drivers``). Same inputs as
    :func:`score_new_rows`, built the same way, so the drivers explain the prices it serves (for a
    product, ``base_price * prod(effect over every driver)`` is that model's ``pred_<model>``).

    Args:
        method: how the contributions are computed, one of ``lib.serving.drivers.CONTRIBUTION_METHODS``
            (default ``lib.serving.drivers.DEFAULT_METHOD``, decision paths).

    Returns:
        ``lib.serving.drivers.top_drivers``'s frame (``top`` rows per product, items' order; default
        ``lib.serving.drivers.DEFAULT_TOP``) with a ``model`` column naming the model explained.

    Raises:
        ValueError: when an embedding model is missing, no blended model attributes its prices, or
            ``method`` is unknown.
    """
    from pricing_assets.lib.models.registry import PRICE_MODELS
    from pricing_assets.lib.serving.drivers import CONTRIBUTION_METHODS, DEFAULT_METHOD, DEFAULT_TOP, top_drivers

    method = method or DEFAULT_METHOD
    if method not in CONTRIBUTION_METHODS:
        raise ValueError(f"explain_new_rows: contributions method {method!r} not in {list(CONTRIBUTION_METHODS)}")

    items = items.reset_index(drop=True)
    _check_embeddings(model, embeddings, "explain_new_rows")
    name = drivers_model(model)
    if name is None:
        raise ValueError(f"explain_new_rows: no model blended by {model.version} attributes its prices to features")
    top = DEFAULT_TOP if top is None else top
    if len(items) == 0:
        X = pd.DataFrame()
        out = top_drivers(np.array([], dtype=str), X, np.zeros((0, 0)), np.zeros(0), model.version, top)
    else:
        inputs, _ = _model_inputs(model, items, listing_features, embeddings, device)
        X, contributions, bias = PRICE_MODELS[name].contributions(model.models[name], inputs, method)
        out = top_drivers(inputs.sample_ids, X, contributions, bias, model.version, top)
    return out.assign(model=name)


def score_catalog_rows(
    model: ServingModel,
    rows: pd.DataFrame,
    images: pd.DataFrame,
    ocr: pd.DataFrame,
    text_encoders: dict,
    image_embeddings: dict[str, pd.DataFrame],
    device: str = "cpu",
) -> pd.DataFrame:
    """Price raw catalog rows end to end with ``model``: parse, join photo and OCR facts, embed the
    text afresh, build features, :func:`score_new_rows`. What ``batch_predictions`` does, except that
    the text is embedded here (so edited listings can be priced: ``benchmarks/probe_behaviour.py``,
    ``pricing_tests/model/test_behaviour.py``).

    Args:
        model: the fitted :class:`ServingModel`.
        rows: n rows with ``sample_id`` (unique) and ``catalog_content``.
        images / ocr: the rows' ``product_images`` and ``ocr_text`` (by ``sample_id``; may lack rows).
        text_encoders: text model name -> encoder with ``encode(list[str]) -> (n, d) float32``
            (``lib.embeddings.encoders.load_encoder``), for every text model of ``model``.
        image_embeddings: image model name -> stored embedding frame (``sample_id``, ``embedding``).
        device: torch device of the fusion MLP.

    Returns:
        :func:`score_new_rows`'s frame (n rows, ``rows``' order; ``price`` USD).

    Raises:
        KeyError: an embedding model of ``model`` has no encoder / stored frame here.
    """
    from pricing_assets.lib.catalog.parsing import parse_catalog
    from pricing_assets.lib.embeddings.text import texts_for_items
    from pricing_assets.lib.features.listing import build_listing_features
    from pricing_assets.lib.features.training_data import embedding_matrix, join_images_and_ocr

    items = join_images_and_ocr(parse_catalog(rows), images, ocr)
    embs = []
    for name, modality, dim in model.embedding_models:
        if modality == "text":
            if name not in text_encoders:
                raise KeyError(f"score_catalog_rows: no encoder for text model {name!r}")
            vec = np.asarray(text_encoders[name].encode(texts_for_items(items, ocr)), dtype=np.float32)
            embs.append((name, modality, vec, np.ones(len(items), dtype=bool)))
        else:
            if name not in image_embeddings:
                raise KeyError(f"score_catalog_rows: no stored embeddings of image model {name!r}")
            embs.append((name, modality, *embedding_matrix(image_embeddings[name], items["sample_id"], dim)))
    return score_new_rows(model, items, build_listing_features(items), embs, device=device)


def now_utc() -> datetime:
    """The current time, UTC (a function so tests can pin it)."""
    return datetime.now(UTC)
