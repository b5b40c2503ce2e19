"""Drift of a scored batch from the training set: is the batch like the data the models learned from?

A batch can differ from the training data (a new category, no photos, longer texts, no parsed
quantity) and still be priced without a word; these measures say so. Each compares the rows that
``batch_predictions`` priced (the batch's products without a price, joined with their photo and OCR
rows exactly as scoring joins them) with the labeled rows of ``products`` (+ ``listing_features``):

- ``photo_share``: share of rows with a photo (``status == "ok"``); flagged when
  ``|batch - training| > max_share_change``.
- ``ocr_share``: share of rows with non-blank OCR text; the same rule.
- ``quantity_share``: share of rows with a parsed quantity (``qty_canonical`` finite: the catalog's
  ``Value`` / ``Unit`` understood); the same rule.
- ``text_length``: the ``text_chars`` distribution; flagged when the two-sample KS statistic
  ``> max_ks`` (its PSI is reported too).
- ``category_mix``: the ``category`` distribution, a category the training set never had counted as
  its own bin; flagged when its PSI ``> max_psi``.
- ``price_distribution``: the predicted prices (log USD) against the training reference prices;
  flagged when their PSI ``> max_psi`` (the KS statistic is reported too).

PSI (population stability index, the credit-scoring convention, e.g. Siddiqi, *Credit Risk Scorecards*,
2006): ``PSI = sum_i (a_i - e_i) * ln(a_i / e_i)`` over bins, ``e_i`` the training share of bin ``i``
and ``a_i`` the batch's; both shares floored at a small epsilon so that an empty bin stays finite.
Numeric bins are the training quantiles (``psi_bins`` of equal training mass), fitted on the
training set only. Rule of thumb: PSI < 0.1 no real change, 0.1-0.25 a moderate shift worth a look,
> 0.25 a major shift; the default threshold is 0.25. PSI is invariant under a monotone transform of
the values, so the PSI of log price is the PSI of the price (the log is what the models regress).

KS: ``scipy.stats.ks_2samp``'s statistic, the largest gap between the two empirical CDFs (0..1).

Small batches: a PSI over ``k`` bins of ``n`` batch rows is, with no drift at all, about
``(k - 1) / n`` by sampling noise alone (0.12 for the 13 categories at 100 rows, 0.4 at 30); the
KS statistic's 5 % critical value is ``1.36 * sqrt(1/n + 1/m)`` (0.14 at 100 rows, 0.25 at 30).
Below ``min_rows`` rows (batch or training) every measure passes with a "too few rows" description
rather than flag that noise.
"""

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

#: The measures, in the order :func:`compare_with_training` returns them.
MEASURES: tuple[str, ...] = (
    "photo_share",
    "ocr_share",
    "quantity_share",
    "text_length",
    "category_mix",
    "price_distribution",
)


@dataclass(frozen=True)
class DriftThresholds:
    """When a measure is flagged (defaults documented here; ``DriftResource`` exposes the same fields).

    Attributes:
        max_share_change: largest accepted absolute change of a share (photo, OCR text, parsed
            quantity), 0..1; 0.2 = twenty percentage points.
        max_psi: largest accepted PSI (category mix, predicted price); 0.25 is the "major shift"
            bound of the PSI rule of thumb (module docstring).
        max_ks: largest accepted two-sample KS statistic (text length), 0..1; 0.2 is above the 5 %
            critical value of 100 batch rows (0.14), so noise alone rarely crosses it.
        min_rows: fewer rows than this (in the batch or the training set): nothing is compared, every
            measure passes with "too few rows".
        psi_bins: quantile bins of a numeric PSI, fitted on the training values.
        psi_epsilon: floor of a bin's share in the PSI (an empty bin would be infinite).
    """

    max_share_change: float = 0.2
    max_psi: float = 0.25
    max_ks: float = 0.2
    min_rows: int = 100
    psi_bins: int = 10
    psi_epsilon: float = 1e-4

    def __post_init__(self):
        if not 0 < self.max_share_change <= 1 or not 0 < self.max_ks <= 1:
            raise ValueError(
                f"max_share_change and max_ks must be in (0, 1], got {self.max_share_change}, {self.max_ks}"
            )
        if self.max_psi <= 0 or self.psi_bins < 2 or not 0 < self.psi_epsilon < 0.01 or self.min_rows < 1:
            raise ValueError(
                f"need max_psi > 0, psi_bins >= 2, 0 < psi_epsilon < 0.01, min_rows >= 1; got {asdict(self)}"
            )


@dataclass(frozen=True)
class DriftResult:
    """One measure's comparison of a batch with the training set.

    Attributes:
        name: one of :data:`MEASURES`.
        statistic_name: ``"abs_share_change"``, ``"ks"`` or ``"psi"``.
        batch_value, training_value: the figure compared on each side: a share (0..1), the median
            ``text_chars``, the share of the batch's most common category (in the batch / in
            training), or the median price (USD); NaN when that side has no rows.
        statistic: the drift statistic (NaN when not compared: too few rows).
        threshold: the statistic's bound (from :class:`DriftThresholds`).
        passed: ``statistic <= threshold``, or too few rows to compare.
        batch_rows, training_rows: rows compared on each side.
        description: one line for a person: what was compared and the verdict.
        details: extra figures (JSON-serialisable): shares per category, unseen categories, the
            other statistic (KS of the price, PSI of the text length), quantiles.
    """

    name: str
    statistic_name: str
    batch_value: float
    training_value: float
    statistic: float
    threshold: float
    passed: bool
    batch_rows: int
    training_rows: int
    description: str
    details: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# the statistics
# ------------------------------------------------------------------------------------------------


def _finite(values) -> np.ndarray:
    x = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    return x[np.isfinite(x)]


def quantile_edges(training: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges of ``bins`` equal-mass bins of ``training`` (its quantiles, duplicates
    removed: a value held by many rows makes fewer, wider bins); ``(≤ bins - 1,)`` float64.

    Raises:
        ValueError: ``training`` holds no finite value.
    """
    x = _finite(training)
    if x.size == 0:
        raise ValueError("quantile_edges: no finite training value")
    return np.unique(np.quantile(x, np.linspace(0, 1, bins + 1))[1:-1])


def psi_from_shares(expected: np.ndarray, actual: np.ndarray, epsilon: float = 1e-4) -> float:
    """PSI of two share vectors over the same bins: ``sum((a - e) * ln(a / e))``, both floored at
    ``epsilon`` (module docstring); >= 0, 0 for equal shares.

    Raises:
        ValueError: the two vectors differ in length.
    """
    e = np.maximum(np.asarray(expected, dtype=np.float64), epsilon)
    a = np.maximum(np.asarray(actual, dtype=np.float64), epsilon)
    if e.shape != a.shape:
        raise ValueError(f"psi_from_shares: {e.shape} bins vs {a.shape}")
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_psi(training, batch, bins: int = 10, epsilon: float = 1e-4) -> float:
    """PSI of the numeric ``batch`` values against ``training``, over quantile bins fitted on the
    training values (:func:`quantile_edges`; the outer bins are open, so a batch value beyond the
    training range falls in the first or last bin). Non-finite values are dropped.

    Raises:
        ValueError: either side holds no finite value.
    """
    t, b = _finite(training), _finite(batch)
    if b.size == 0:
        raise ValueError("numeric_psi: no finite batch value")
    edges = quantile_edges(t, bins)
    n = edges.size + 1
    t_share = np.bincount(np.searchsorted(edges, t, side="right"), minlength=n) / t.size
    b_share = np.bincount(np.searchsorted(edges, b, side="right"), minlength=n) / b.size
    return psi_from_shares(t_share, b_share, epsilon)


def categorical_psi(training, batch, epsilon: float = 1e-4) -> tuple[float, dict]:
    """PSI of the ``batch`` labels' mix against ``training``'s: one bin per label of either side, a
    label the training set never had counted as its own bin (training share 0 → ``epsilon``).
    Missing labels are the label ``"<missing>"``.

    Returns:
        ``(psi, {"training_shares": {label: share}, "batch_shares": {label: share},
        "unseen": [labels in the batch only], "unseen_share": batch share of those})``.

    Raises:
        ValueError: either side is empty.
    """
    t = pd.Series(training, dtype=object).fillna("<missing>").astype(str)
    b = pd.Series(batch, dtype=object).fillna("<missing>").astype(str)
    if t.empty or b.empty:
        raise ValueError("categorical_psi: an empty side")
    ts, bs = t.value_counts(normalize=True), b.value_counts(normalize=True)
    labels = sorted(set(ts.index) | set(bs.index))
    psi = psi_from_shares(
        ts.reindex(labels, fill_value=0.0).to_numpy(), bs.reindex(labels, fill_value=0.0).to_numpy(), epsilon
    )
    unseen = sorted(set(bs.index) - set(ts.index))
    return psi, {
        "training_shares": {k: round(float(v), 4) for k, v in ts.items()},
        "batch_shares": {k: round(float(v), 4) for k, v in bs.items()},
        "unseen": unseen,
        "unseen_share": round(float(bs.reindex(unseen).sum()), 4),
    }


def ks_statistic(training, batch) -> float:
    """Two-sample Kolmogorov-Smirnov statistic (``scipy.stats.ks_2samp``): the largest gap between
    the two empirical CDFs, 0..1. Non-finite values are dropped.

    Raises:
        ValueError: either side holds no finite value.
    """
    from scipy.stats import ks_2samp

    t, b = _finite(training), _finite(batch)
    if t.size == 0 or b.size == 0:
        raise ValueError("ks_statistic: a side without finite values")
    return float(ks_2samp(t, b).statistic)


# ------------------------------------------------------------------------------------------------
# the rows compared
# ------------------------------------------------------------------------------------------------

#: Columns :func:`compare_with_training` reads from each side's rows.
ROW_COLUMNS: tuple[str, ...] = ("sample_id", "status", "ocr_text", "text_chars", "category", "qty_canonical")


def training_rows(products: pd.DataFrame, listing_features: pd.DataFrame) -> pd.DataFrame:
    """The training side: ``products`` (labeled rows with photo ``status``, ``ocr_text``,
    ``text_chars``) left-joined on ``sample_id`` with their ``listing_features`` (``category``,
    ``qty_canonical``); columns :data:`ROW_COLUMNS`, one row per product.

    Raises:
        KeyError: a needed column is missing (named).
    """
    return _rows(products, listing_features, "training_rows")


def batch_rows(catalog_items: pd.DataFrame, product_images: pd.DataFrame, ocr_text: pd.DataFrame) -> pd.DataFrame:
    """The batch side, the rows ``batch_predictions`` prices: the batch's ``catalog_items`` without a
    price (latest row per ``sample_id``), joined with their ``product_images`` / ``ocr_text`` rows
    (``lib.features.training_data.join_images_and_ocr``, as scoring joins them) and their listing
    features (``lib.features.listing.build_listing_features``); columns :data:`ROW_COLUMNS`.

    Raises:
        KeyError: a needed column is missing; pandas.errors.MergeError: a key twice in images / OCR.
    """
    from pricing_assets.lib.catalog.batches import latest_batch_wins
    from pricing_assets.lib.features.listing import build_listing_features
    from pricing_assets.lib.features.training_data import join_images_and_ocr

    items, _ = latest_batch_wins(catalog_items[catalog_items["price"].isna()])
    items = join_images_and_ocr(items.reset_index(drop=True), product_images, ocr_text)
    return _rows(items, build_listing_features(items), "batch_rows")


def _rows(items: pd.DataFrame, features: pd.DataFrame, who: str) -> pd.DataFrame:
    need = {
        "items": ("sample_id", "status", "ocr_text", "text_chars"),
        "features": ("sample_id", "category", "qty_canonical"),
    }
    for side, frame in (("items", items), ("features", features)):
        missing = [c for c in need[side] if c not in frame.columns]
        if missing:
            raise KeyError(f"{who}: {side} lack columns {missing}")
    left = items[list(need["items"])].astype({"sample_id": str})
    right = features[list(need["features"])].astype({"sample_id": str}).drop_duplicates("sample_id")
    return left.merge(right, on="sample_id", how="left")[list(ROW_COLUMNS)].reset_index(drop=True)


def _has_ocr_text(rows: pd.DataFrame) -> pd.Series:
    text = rows["ocr_text"]
    return text.notna() & text.astype(str).str.strip().ne("")


# ------------------------------------------------------------------------------------------------
# the comparison
# ------------------------------------------------------------------------------------------------


def _verdict(name: str, statistic: float, threshold: float) -> tuple[bool, str]:
    if statistic > threshold:
        return False, f"{name} drifted: {statistic:.3f} > {threshold:g}"
    return True, f"{name} like the training set: {statistic:.3f} <= {threshold:g}"


def _share(name: str, batch: pd.Series, training: pd.Series, th: DriftThresholds) -> DriftResult:
    b, t = float(batch.mean()), float(training.mean())
    stat = abs(b - t)
    passed, desc = _verdict(name, stat, th.max_share_change)
    return DriftResult(
        name,
        "abs_share_change",
        round(b, 4),
        round(t, 4),
        round(stat, 4),
        th.max_share_change,
        passed,
        int(batch.size),
        int(training.size),
        f"{desc} (batch {b:.1%}, training {t:.1%})",
    )


def _median(values) -> float:
    x = _finite(values)
    return float(np.median(x)) if x.size else math.nan


def _text_length(batch: pd.DataFrame, training: pd.DataFrame, th: DriftThresholds) -> DriftResult:
    b, t = _finite(batch["text_chars"]), _finite(training["text_chars"])
    stat = ks_statistic(t, b)
    passed, desc = _verdict("text_length", stat, th.max_ks)
    bm, tm = _median(b), _median(t)
    return DriftResult(
        "text_length",
        "ks",
        bm,
        tm,
        round(stat, 4),
        th.max_ks,
        passed,
        int(b.size),
        int(t.size),
        f"{desc} (median text_chars batch {bm:.0f}, training {tm:.0f})",
        {"psi": round(numeric_psi(t, b, th.psi_bins, th.psi_epsilon), 4)},
    )


def _category_mix(batch: pd.DataFrame, training: pd.DataFrame, th: DriftThresholds) -> DriftResult:
    stat, details = categorical_psi(training["category"], batch["category"], th.psi_epsilon)
    top = max(details["batch_shares"], key=details["batch_shares"].get)
    b, t = details["batch_shares"][top], details["training_shares"].get(top, 0.0)
    passed, desc = _verdict("category_mix", stat, th.max_psi)
    unseen = f", unseen {details['unseen']} ({details['unseen_share']:.1%})" if details["unseen"] else ""
    return DriftResult(
        "category_mix",
        "psi",
        b,
        t,
        round(stat, 4),
        th.max_psi,
        passed,
        len(batch),
        len(training),
        f"{desc} (top batch category {top!r}: batch {b:.1%}, training {t:.1%}{unseen})",
        {"top_category": top, **details},
    )


def _prices(batch_prices, reference_prices, th: DriftThresholds) -> DriftResult:
    b = _finite(batch_prices)
    t = _finite(reference_prices)
    b, t = np.log(b[b > 0]), np.log(t[t > 0])
    if b.size < th.min_rows or t.size < th.min_rows:
        return _too_few("price_distribution", "psi", th.max_psi, int(b.size), int(t.size), th.min_rows)
    stat = numeric_psi(t, b, th.psi_bins, th.psi_epsilon)
    passed, desc = _verdict("price_distribution", stat, th.max_psi)
    bm, tm = float(np.exp(np.median(b))), float(np.exp(np.median(t)))
    return DriftResult(
        "price_distribution",
        "psi",
        round(bm, 2),
        round(tm, 2),
        round(stat, 4),
        th.max_psi,
        passed,
        int(b.size),
        int(t.size),
        f"{desc} (median price batch {bm:.2f} USD, reference {tm:.2f} USD)",
        {"ks": round(ks_statistic(t, b), 4)},
    )


def _too_few(
    name: str, statistic_name: str, threshold: float, n_batch: int, n_train: int, min_rows: int
) -> DriftResult:
    return DriftResult(
        name,
        statistic_name,
        math.nan,
        math.nan,
        math.nan,
        threshold,
        True,
        n_batch,
        n_train,
        f"too few rows to compare: batch {n_batch}, training {n_train} (min_rows={min_rows}); not flagged",
    )


_STATISTIC = {
    "photo_share": "abs_share_change",
    "ocr_share": "abs_share_change",
    "quantity_share": "abs_share_change",
    "text_length": "ks",
    "category_mix": "psi",
    "price_distribution": "psi",
}


def compare_with_training(
    batch: pd.DataFrame,
    training: pd.DataFrame,
    batch_prices=None,
    reference_prices=None,
    thresholds: DriftThresholds | None = None,
) -> list[DriftResult]:
    """Every measure of :data:`MEASURES` for one batch, in that order.

    Args:
        batch: the batch's rows (:func:`batch_rows`; columns :data:`ROW_COLUMNS`).
        training: the training rows (:func:`training_rows`).
        batch_prices: the batch's predicted prices (USD, ``batch_predictions.price``); None: the
            price measure is not compared (passes, "too few rows").
        reference_prices: what they are compared with (USD): the training set's out-of-fold blend
            predictions (``price_blend.pred_price``: predictions against predictions, both shrunk
            towards the mean alike) or its labels. Non-finite and non-positive prices are dropped.
        thresholds: default :class:`DriftThresholds`.

    Returns:
        One :class:`DriftResult` per measure. Below ``thresholds.min_rows`` rows on either side, every
        row measure passes with a "too few rows" description (the price measure counts its own rows).

    Raises:
        KeyError: a column of :data:`ROW_COLUMNS` is missing (named).
    """
    th = thresholds or DriftThresholds()
    for who, frame in (("batch", batch), ("training", training)):
        missing = [c for c in ROW_COLUMNS if c not in frame.columns]
        if missing:
            raise KeyError(f"compare_with_training: {who} rows lack columns {missing}")
    bounds = {"abs_share_change": th.max_share_change, "ks": th.max_ks, "psi": th.max_psi}
    if len(batch) < th.min_rows or len(training) < th.min_rows:
        out = [
            _too_few(m, _STATISTIC[m], bounds[_STATISTIC[m]], len(batch), len(training), th.min_rows)
            for m in MEASURES[:-1]
        ]
    else:
        out = [
            _share("photo_share", batch["status"].eq("ok"), training["status"].eq("ok"), th),
            _share("ocr_share", _has_ocr_text(batch), _has_ocr_text(training), th),
            _share("quantity_share", _qty(batch), _qty(training), th),
            _text_length(batch, training, th),
            _category_mix(batch, training, th),
        ]
    if batch_prices is None or reference_prices is None:
        return [*out, _too_few("price_distribution", "psi", th.max_psi, 0, 0, th.min_rows)]
    return [*out, _prices(batch_prices, reference_prices, th)]


def _qty(rows: pd.DataFrame) -> pd.Series:
    return pd.Series(np.isfinite(pd.to_numeric(rows["qty_canonical"], errors="coerce").to_numpy(dtype=np.float64)))
