"""Price drivers: the features that move each served price most, as multiplicative effects.

Method: LightGBM's per-row feature contributions, by decision path (:func:`path_contributions`, Saabas'
method, the default) or as Shapley values (:func:`feature_contributions`: ``Booster.predict(...,
pred_contrib=True)``, TreeSHAP of Lundberg et al. 2018/2020, "From local explanations to global
understanding with explainable AI for trees"); :data:`CONTRIBUTION_METHODS`. The LightGBM price model
regresses the natural log of the price, so per product

    log(price) = bias + sum_j contribution_j        (averaged over its boosters: the sum stays exact)

and ``exp(contribution_j)`` is feature j's multiplicative effect on the price: ``x1.8`` means the
feature's value raises this product's price 1.8-fold against the average labeled product
(``base_price = exp(bias)``, USD). Correlated columns that describe one fact (the six statistics of one
kNN view, the quantity parse, the listing's length, the photo) are summed into one driver (SHAP values
and path contributions are additive over groups of features), named for a reader and shown with a readable value
("pack quantity = 12", "similar products' median price (TF-IDF) = 14.20 USD").
"""

import numpy as np
import pandas as pd

from pricing_assets.lib.features.listing import LENGTH_FEATURES, NUMERIC_FEATURES, QUANTITY_FEATURES
from pricing_assets.lib.retrieval.search import KNN_STATS, UNIT_STATS

#: Drivers kept per priced product (the largest |log effect| first).
DEFAULT_TOP = 5

#: Columns of a drivers frame: one row per (priced product, rank).
DRIVER_COLUMNS = ("sample_id", "rank", "feature", "value", "contribution", "effect", "base_price", "model_version")

#: The pack-quantity parse: one driver; how much the listing says: one driver.
QUANTITY_COLUMNS = QUANTITY_FEATURES
LISTING_LENGTH_COLUMNS = LENGTH_FEATURES
#: The photo's facts (``lib.images``) and its OCR: one driver.
PHOTO_COLUMNS = ("width", "height", "n_bytes", "has_image", "ocr_lines")
#: Readable names of the kNN views (``lib.retrieval.reference``); an embedding model's view is named
#: for its model.
VIEW_NAMES = {"tfidf": "TF-IDF", "title_char": "title characters", "title_word": "title words"}
#: Readable names of single columns that are drivers of their own; values in log1p(USD) are marked.
SINGLE_NAMES = {
    "te_brand": "brand's typical price",
    "te_category": "category's typical price",
    "category": "category",
    "stack_tfidf_ridge": "text model's price (TF-IDF ridge)",
    "stack_title_ridge": "title model's price (title ridge)",
}
#: Single columns holding ``log1p(price USD)``: shown in USD.
LOG1P_USD_COLUMNS = ("te_brand", "te_category", "stack_tfidf_ridge", "stack_title_ridge")


def _view_name(view: str) -> str:
    if view in VIEW_NAMES:
        return VIEW_NAMES[view]
    if view.startswith("image_"):
        return f"photo embedding {view.removeprefix('image_')}"
    return f"text embedding {view}"


def _split_knn(column: str) -> tuple[str, str, str] | None:
    """``(kind, view, stat)`` of a kNN feature column (kind ``knn`` or ``uknn``), else None."""
    for kind, stats, sep in (("uknn", UNIT_STATS, "_unit_"), ("knn", KNN_STATS, "_")):
        if not column.startswith(f"{kind}_"):
            continue
        for stat in sorted(stats, key=len, reverse=True):  # top1_sim before top1
            if column.endswith(f"{sep}{stat}"):
                return kind, column[len(kind) + 1 : -len(sep + stat)], stat
    return None


def driver_of(column: str) -> str:
    """The readable driver a feature column belongs to (columns of one fact share it).

    Examples: ``ipq_value`` -> ``pack quantity``; ``knn_tfidf_median`` -> ``similar products' median price
    (TF-IDF)``; ``is_organic`` -> ``organic``; an unknown column -> its own name.
    """
    if column in QUANTITY_COLUMNS:
        return "pack quantity"
    if column in LISTING_LENGTH_COLUMNS:
        return "listing length"
    if column in PHOTO_COLUMNS:
        return "photo"
    if column in SINGLE_NAMES:
        return SINGLE_NAMES[column]
    if column.startswith("is_") and column in NUMERIC_FEATURES:
        return column.removeprefix("is_").replace("_", " ")
    knn = _split_knn(column)
    if knn:
        kind, view, _ = knn
        what = "unit price x this quantity" if kind == "uknn" else "median price"
        return f"similar products' {what} ({_view_name(view)})"
    return column


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _usd(log1p_value) -> str:
    v = _num(log1p_value)
    return "unknown" if not np.isfinite(v) else f"{np.expm1(v):.2f} USD"


def _g(v, suffix: str = "") -> str:
    v = _num(v)
    return "unknown" if not np.isfinite(v) else f"{v:g}{suffix}"


def driver_value(driver: str, columns: list[str], row: pd.Series) -> str:
    """The readable value of ``driver`` for one product: its features ``row`` (a ``feature_matrix``
    row), ``columns`` the driver's feature columns. Prices in USD, quantities as parsed."""
    if driver == "pack quantity":
        pack = _num(row.get("pack_count"))
        text = _g(row.get("ipq_value"))
        return f"{text}, pack of {pack:g}" if np.isfinite(pack) and pack > 1 else text
    if driver == "listing length":
        return f"{_g(row.get('text_words'))} words, {_g(row.get('n_bullets'))} bullets"
    if driver == "photo":
        w, h = _num(row.get("width")), _num(row.get("height"))
        return f"{w:g}x{h:g} px" if np.isfinite(w) and np.isfinite(h) else "no photo"
    knn = _split_knn(columns[0])
    if knn:
        kind, view, _ = knn
        if kind == "uknn":
            return _usd(row.get(f"uknn_{view}_unit_wmean"))
        return f"{_usd(row.get(f'knn_{view}_median'))} (best match similarity {_g(round(_num(row.get(f'knn_{view}_top1_sim')), 2))})"
    if len(columns) == 1:
        col = columns[0]
        v = row.get(col)
        if col in LOG1P_USD_COLUMNS:
            return _usd(v)
        if col.startswith("is_"):
            return "yes" if _num(v) == 1 else "no"
        if col == "category" or not np.isfinite(_num(v)):
            return "unknown" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
        return f"{_num(v):.4g}"
    return ", ".join(f"{c}={_g(row.get(c))}" for c in columns)


def feature_contributions(boosters: list, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per-row contributions of LightGBM boosters that regress log price, averaged over the boosters.

    Args:
        boosters: ``lightgbm.Booster`` list (the ``lightgbm`` price model's fitted boosters); each
            predicts with its ``best_iteration`` (0: every tree), as ``predict_lightgbm`` does.
        X: (n, p) their input frame (``lib.models.lightgbm_regression.model_input``).

    Returns:
        ``(contributions (n, p) float64, bias (n,) float64)``, natural-log price scale:
        ``bias + contributions.sum(1)`` is the boosters' mean log price.

    Raises:
        ValueError: when no booster is given.
    """
    if not boosters:
        raise ValueError("feature_contributions: no booster")
    c = np.mean(
        [
            np.asarray(b.predict(X, num_iteration=b.best_iteration, pred_contrib=True), dtype=np.float64)
            for b in boosters
        ],
        axis=0,
    )
    return c[:, :-1], c[:, -1]


def _path_matrix(booster, p: int):
    """The per-leaf path contributions of every tree of ``booster`` (its ``best_iteration`` trees):
    ``(S, offsets, bias)`` with S a (total leaves, p) CSR float64 matrix whose row ``offsets[t] + leaf``
    holds, for each split on that leaf's path in tree t, ``value(child) - value(node)`` in the split's
    feature column (``Booster.dump_model``'s ``internal_value`` / ``leaf_value``), offsets (T,) int64 and
    bias the sum of the trees' root values: ``bias + S[row's leaves].sum()`` is the booster's raw
    prediction."""
    import scipy.sparse as sp

    trees = booster.dump_model(num_iteration=booster.best_iteration)["tree_info"]
    offsets = np.cumsum([0] + [t["num_leaves"] for t in trees[:-1]]).astype(np.int64)
    rows, cols, vals, bias = [], [], [], 0.0
    for t, tree in enumerate(trees):
        root = tree["tree_structure"]
        if "leaf_index" in root:  # a single-leaf tree: its value is all bias
            bias += float(root["leaf_value"])
            continue
        bias += float(root["internal_value"])
        stack = [(root, ())]  # (node, path so far: ((feature, delta), ...))
        while stack:
            node, path = stack.pop()
            for side in ("left_child", "right_child"):
                child = node[side]
                leaf = "leaf_index" in child
                step = (
                    *path,
                    (
                        node["split_feature"],
                        (child["leaf_value"] if leaf else child["internal_value"]) - node["internal_value"],
                    ),
                )
                if not leaf:
                    stack.append((child, step))
                    continue
                for feature, delta in step:
                    rows.append(offsets[t] + child["leaf_index"])
                    cols.append(feature)
                    vals.append(delta)
    total = int(offsets[-1] + trees[-1]["num_leaves"]) if trees else 0
    S = sp.csr_matrix((vals, (rows, cols)), shape=(total, p), dtype=np.float64)  # duplicates summed
    return S, offsets, bias


#: Rows per block of :func:`path_contributions`: a block holds rows x trees x depth path entries (about
#: 12 bytes each, twice); at 1,024 rows the 150k benchmark's 3 x 3,257 trees peaked the scoring run at
#: 8.4 GB (docs/deployment.md, 2026-12-07), 256 keeps a block near 0.6 GB there.
PATH_BLOCK_ROWS = 256


def path_contributions(boosters: list, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per-row feature contributions of LightGBM boosters that regress log price, by decision path
    (Saabas 2014, "Interpreting random forests"; the ``treeinterpreter`` method): each split on the
    path a row takes through a tree credits its feature with the change of the node's value, averaged
    over the boosters. Like TreeSHAP (:func:`feature_contributions`) the contributions add up exactly:
    ``bias + sum`` is the boosters' mean log price; unlike it they are not Shapley values (a split
    near the root weighs more). Cost: one leaf lookup per tree (``pred_leaf``) and a sparse sum of
    path entries, linear in rows x trees x depth, against TreeSHAP's rows x trees x leaves x depth^2,
    which made ``price_drivers`` most of the scoring time and grew faster than the catalog
    (docs/experiments.md, "Price drivers by decision path").

    Args:
        boosters: ``lightgbm.Booster`` list; each uses its ``best_iteration`` trees (0: every tree).
        X: (n, p) their input frame (``lib.models.lightgbm_regression.model_input``).

    Returns:
        ``(contributions (n, p) float64, bias (n,) float64)``, natural-log price scale.

    Raises:
        ValueError: when no booster is given.
    """
    import scipy.sparse as sp

    if not boosters:
        raise ValueError("path_contributions: no booster")
    n, p = X.shape
    total = np.zeros((n, p), dtype=np.float64)
    bias = 0.0
    for b in boosters:
        S, offsets, root = _path_matrix(b, p)
        bias += root
        leaves = np.asarray(b.predict(X, num_iteration=b.best_iteration, pred_leaf=True), dtype=np.int64)
        leaves = leaves.reshape(n, len(offsets)) + offsets
        for lo in range(0, n, PATH_BLOCK_ROWS):
            block = leaves[lo : lo + PATH_BLOCK_ROWS]
            r, t = block.shape
            pick = sp.csr_matrix((np.ones(r * t), (np.repeat(np.arange(r), t), np.arange(r * t))), shape=(r, r * t))
            total[lo : lo + r] += (pick @ S[block.ravel()]).toarray()
    k = len(boosters)
    return total / k, np.full(n, bias / k)


#: How a price's contributions are computed: ``path`` (:func:`path_contributions`, the default: linear
#: in trees, agrees with TreeSHAP on 88 % of the top 5 drivers on the sample) or ``treeshap``
#: (:func:`feature_contributions`, Shapley values; 15x slower on the demo's model, 8-35x on larger
#: ones): docs/experiments.md, "Price drivers by decision path".
CONTRIBUTION_METHODS = ("path", "treeshap")
DEFAULT_METHOD = "path"


def booster_contributions(
    boosters: list, X: pd.DataFrame, method: str = DEFAULT_METHOD
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`path_contributions` or :func:`feature_contributions` of ``boosters`` by ``method``.

    Raises:
        ValueError: ``method`` is not one of :data:`CONTRIBUTION_METHODS`, or no booster is given.
    """
    if method not in CONTRIBUTION_METHODS:
        raise ValueError(f"contributions method {method!r}: expected one of {list(CONTRIBUTION_METHODS)}")
    return (path_contributions if method == "path" else feature_contributions)(boosters, X)


def top_drivers(
    sample_ids: np.ndarray,
    X: pd.DataFrame,
    contributions: np.ndarray,
    bias: np.ndarray,
    model_version: str,
    top: int = DEFAULT_TOP,
) -> pd.DataFrame:
    """The ``top`` drivers of each of n products: feature columns grouped by :func:`driver_of`, their
    contributions summed, ranked by absolute log effect.

    Args:
        sample_ids: (n,) str; X: (n, p) the features the contributions are of (for the values shown).
        contributions: (n, p) float64 log-price contributions (:func:`feature_contributions`), columns
            in ``X``'s order; bias: (n,) float64.
        model_version: the serving model's version (every row carries it).
        top: drivers kept per product.

    Returns:
        DataFrame with :data:`DRIVER_COLUMNS`, ``min(top, drivers)`` rows per product in input order,
        rank 1 = largest ``|contribution|``; ``effect = exp(contribution)`` (> 0, multiplies the price),
        ``base_price = exp(bias)`` (USD, the average labeled product's price for the model).

    Raises:
        ValueError: on mismatched shapes or ``top < 1``.
    """
    n, p = contributions.shape if contributions.ndim == 2 else (len(contributions), -1)
    if (n and p != X.shape[1]) or len(X) != n or len(sample_ids) != n or len(bias) != n:
        raise ValueError(
            f"top_drivers: ids {len(sample_ids)}, X {X.shape}, contributions {contributions.shape}, bias {len(bias)}"
        )
    if top < 1:
        raise ValueError(f"top_drivers: top must be >= 1, got {top}")
    if n == 0:
        empty = {c: pd.Series([], dtype=str) for c in ("sample_id", "feature", "value", "model_version")}
        numbers = {c: pd.Series([], dtype=np.float64) for c in ("contribution", "effect", "base_price")}
        return pd.DataFrame({**empty, **numbers, "rank": pd.Series([], dtype=np.int64)})[list(DRIVER_COLUMNS)]
    groups: dict[str, list[int]] = {}
    for j, col in enumerate(X.columns):
        groups.setdefault(driver_of(str(col)), []).append(j)
    names = list(groups)
    summed = np.column_stack([contributions[:, idx].sum(axis=1) for idx in groups.values()])
    kk = min(top, len(names))
    order = np.argsort(-np.abs(summed), axis=1, kind="stable")[:, :kk]
    rows = []
    ids = np.asarray(sample_ids, dtype=str)
    for i in range(n):
        x = X.iloc[i]
        for r, g in enumerate(order[i], start=1):
            name = names[g]
            rows.append(
                (
                    ids[i],
                    r,
                    name,
                    driver_value(name, [str(X.columns[j]) for j in groups[name]], x),
                    float(summed[i, g]),
                )
            )
    out = pd.DataFrame(rows, columns=["sample_id", "rank", "feature", "value", "contribution"])
    out["sample_id"] = out["sample_id"].astype(str)
    out["rank"] = out["rank"].astype(np.int64)
    out["contribution"] = out["contribution"].astype(np.float64)
    out["effect"] = np.exp(out["contribution"].to_numpy())
    out["base_price"] = np.repeat(np.exp(np.asarray(bias, dtype=np.float64)), kk)
    out["model_version"] = str(model_version)
    return out[list(DRIVER_COLUMNS)]


def format_effect(effect: float) -> str:
    """``x1.80`` / ``x0.62``: a multiplicative effect as the CLI and the UI show it."""
    return f"x{effect:.2f}"
