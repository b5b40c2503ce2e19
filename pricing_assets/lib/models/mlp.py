"""Fusion MLP price model in torch (pure functions, no Dagster).

Three branches meet in one regression head on ``log1p(price)``:

- text: the products' text embeddings (e.g. MiniLM, (n, 384) float32, L2-normalised);
- image: image embeddings (e.g. EfficientNet-Lite0 pooled features, (n, 1280) float32); rows
  without a usable image are *masked*: their branch output is replaced by a learned "no image"
  vector, so a zero placeholder embedding never looks like a real photo;
- tabular: engineered / OOF / kNN features of the ``feature_matrix``, quantile-normalised with
  NaN filled by 0 plus one missing-indicator column per column that has NaNs
  (:func:`tabular_matrix`).

Loss: L1 on ``log1p(price)``. SMAPE is a bounded relative error; for small errors
``|log p - log y| ~= |p - y| / y``, so L1 in log space is the usual smooth surrogate (it is what
the 2025 challenge's top solutions trained on). Early stopping on each fold uses an *inner*
validation split of the training folds (never the held-out fold), so OOF SMAPE stays honest.

Determinism: ``torch.manual_seed`` per fold, ``torch.use_deterministic_algorithms(True)`` while
training, a seeded ``torch.Generator`` for shuffling, and a fixed intra-op thread count: the same
inputs on the same machine give bit-identical predictions.
"""

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from pricing_assets.lib.models.cross_validation import DEFAULT_SEED, CvResult, inner_split
from pricing_assets.lib.models.metrics import smape


@dataclass(frozen=True)
class MLPConfig:
    """Hyper-parameters of :class:`FusionMLP` and its training loop.

    Defaults: dropout and weight decay high and the learning rate low, because the net over-fits the
    sample's labeled rows within a few epochs; one CPU thread. Their OOF SMAPE and time:
    docs/experiments.md, "Fusion MLP defaults" (``benchmarks/bench_models.py --mlp-grid`` tries a
    few more). Not tuned further.
    """

    text_hidden: int = 256
    image_hidden: int = 64
    tab_hidden: int = 128
    head_hidden: int = 256
    dropout: float = 0.3
    lr: float = 1e-3
    weight_decay: float = 1e-3
    batch_size: int = 512
    max_epochs: int = 40
    patience: int = 6
    inner_valid_fraction: float = 0.1
    seed: int = DEFAULT_SEED
    num_threads: int = 1  # one thread: more are slower on a shared 2-core box (OpenMP barriers; docs/experiments.md, "Fusion MLP defaults")


@dataclass
class MLPInputs:
    """Aligned model inputs for n products (row i of every array is the same product).

    Attributes:
        text: (n, d_text) float32 text embeddings (several encoders concatenated if any).
        image: (n, d_image) float32 image embeddings; rows without an image may hold anything (zeros).
        has_image: (n,) bool, True where ``image`` is a real embedding.
        tab: (n, p) float32 tabular features, finite (see :func:`tabular_matrix`).
        tab_columns: p column names of ``tab``.
    """

    text: np.ndarray
    image: np.ndarray
    has_image: np.ndarray
    tab: np.ndarray
    tab_columns: list[str] = field(default_factory=list)

    def __post_init__(self):
        n = len(self.text)
        for name in ("image", "has_image", "tab"):
            arr = getattr(self, name)
            if len(arr) != n:
                raise ValueError(f"MLPInputs: {name} has {len(arr)} rows, text has {n}")
        if self.text.ndim != 2 or self.image.ndim != 2 or self.tab.ndim != 2:
            raise ValueError(
                f"MLPInputs: text/image/tab must be 2-D, got {self.text.shape}, {self.image.shape}, {self.tab.shape}"
            )
        for name in ("text", "tab"):
            bad = np.flatnonzero(~np.isfinite(getattr(self, name)).all(axis=1))
            if bad.size:
                raise ValueError(f"MLPInputs: {name} has non-finite values in rows {bad[:5].tolist()}")
        has = np.asarray(self.has_image, dtype=bool)
        bad = np.flatnonzero(has & ~np.isfinite(self.image).all(axis=1))
        if bad.size:
            raise ValueError(f"MLPInputs: image has non-finite values in rows {bad[:5].tolist()} marked has_image")

    def take(self, idx: np.ndarray) -> "MLPInputs":
        """The rows ``idx`` (int or bool index) as a new :class:`MLPInputs`."""
        return MLPInputs(
            self.text[idx], self.image[idx], np.asarray(self.has_image)[idx], self.tab[idx], list(self.tab_columns)
        )


@dataclass
class TabularTransform:
    """The fitted normalisation of :func:`tabular_matrix`: which columns, the quantile transform
    (fitted on the training rows) and the one-hot categories, applied unchanged to new rows.

    Attributes:
        numeric: numeric columns kept (not all-NaN at fit); quantile: the fitted scikit-learn
        ``QuantileTransformer``; missing: columns that get a ``<col>__isna`` indicator;
        categories: categorical column -> sorted values seen at fit (one-hot; unseen values: all 0);
        names: output column names in order.
    """

    numeric: list
    quantile: object
    missing: list
    categories: dict
    names: list

    @classmethod
    def fit(cls, frame: pd.DataFrame, exclude_prefixes: tuple[str, ...] = ()) -> "TabularTransform":
        """Fit on ``frame``'s rows (see :func:`tabular_matrix`).

        Raises:
            ValueError: if ``frame`` has no rows or a numeric column holds +/-inf (named).
        """
        from sklearn.preprocessing import QuantileTransformer

        if len(frame) == 0:
            raise ValueError("tabular_matrix: empty frame")
        cols = [c for c in frame.columns if not any(str(c).startswith(p) for p in exclude_prefixes)]
        num_cols = [c for c in cols if pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])]
        cat_cols = [c for c in cols if c not in num_cols]
        num = _numeric(frame, num_cols)
        isna = np.isnan(num)
        kept = [c for c, k in zip(num_cols, ~isna.all(axis=0)) if k]  # an all-NaN column carries nothing
        qt = None
        if kept:
            qt = QuantileTransformer(
                n_quantiles=min(200, len(frame)), output_distribution="normal", subsample=10**9, random_state=0
            )
            qt.fit(_numeric(frame, kept))
        missing = [c for c in kept if frame[c].isna().any()]
        categories = {c: sorted(frame[c].astype(str).fillna("nan").unique()) for c in cat_cols}
        names = (
            [str(c) for c in kept]
            + [f"{c}__isna" for c in missing]
            + [f"{c}={v}" for c in cat_cols for v in categories[c]]
        )
        return cls(kept, qt, missing, categories, names)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """(n, len(names)) float32 finite matrix of ``frame``'s rows.

        Raises:
            KeyError: a fitted column is missing from ``frame``; ValueError: +/-inf in a numeric column.
        """
        parts = []
        if self.numeric:
            num = _numeric(frame, self.numeric)
            parts.append(np.clip(np.nan_to_num(self.quantile.transform(num), nan=0.0), -5, 5))
            parts.append(frame[self.missing].isna().to_numpy(dtype=np.float64))
        for c, values in self.categories.items():
            vals = frame[c].astype(str).fillna("nan").to_numpy()
            parts.append((vals[:, None] == np.asarray(values, dtype=object)[None, :]).astype(np.float64))
        return np.hstack(parts).astype(np.float32) if parts else np.zeros((len(frame), 0), dtype=np.float32)


def _numeric(frame: pd.DataFrame, cols: list) -> np.ndarray:
    num = frame[cols].astype(np.float64).to_numpy()
    inf_cols = [cols[j] for j in np.flatnonzero(np.isinf(num).any(axis=0))]
    if inf_cols:
        raise ValueError(f"tabular_matrix: infinite values in columns {inf_cols}")
    return num


def tabular_matrix(frame: pd.DataFrame, exclude_prefixes: tuple[str, ...] = ()) -> tuple[np.ndarray, list[str]]:
    """Numeric columns of ``frame`` normalised for a neural net: quantile-normalised, NaN -> 0 plus
    missing indicators, string columns one-hot encoded (:class:`TabularTransform` fitted and applied
    to the same rows; the fusion MLP fits it on the labeled rows and applies it to new ones).

    The quantile transform (scikit-learn ``QuantileTransformer``, normal output) tames the heavy
    tails of quantities and counts that plain standardisation would leave in; unsupervised.

    Args:
        frame: (n, ...) features; numeric columns (any float/int/bool dtype) and object/category
            columns (one-hot, categories sorted, so the column set depends only on the values).
        exclude_prefixes: drop columns whose name starts with one of these (e.g. ``("sample_id",)``).

    Returns:
        ((n, p) float32 finite matrix, p column names). Missing indicators are named ``<col>__isna``,
        one-hot columns ``<col>=<value>``.

    Raises:
        ValueError: if ``frame`` has no rows or a numeric column holds +/-inf (named).
    """
    t = TabularTransform.fit(frame, exclude_prefixes)
    return t.transform(frame), list(t.names)


def build_fusion_mlp(d_text: int, d_image: int, d_tab: int, cfg: MLPConfig):
    """A fresh (untrained) ``FusionMLP`` ``torch.nn.Module``.

    ``forward(text (b, d_text) float32, image (b, d_image) float32, has_image (b,) bool,
    tab (b, d_tab) float32) -> (b,) float32`` predicted ``log1p(price)``. Rows with
    ``has_image=False`` ignore ``image`` entirely (their image branch output is a learned vector).
    """
    import torch
    from torch import nn

    class FusionMLP(nn.Module):
        """Text / image / tabular branches -> concatenation -> MLP head -> log1p(price)."""

        def __init__(self):
            super().__init__()
            self.text = nn.Sequential(nn.Linear(d_text, cfg.text_hidden), nn.GELU(), nn.Dropout(cfg.dropout))
            self.image = nn.Sequential(
                nn.LayerNorm(d_image), nn.Linear(d_image, cfg.image_hidden), nn.GELU(), nn.Dropout(cfg.dropout)
            )
            self.no_image = nn.Parameter(torch.zeros(cfg.image_hidden))
            self.tab = nn.Sequential(nn.Linear(d_tab, cfg.tab_hidden), nn.GELU(), nn.Dropout(cfg.dropout / 2))
            width = cfg.text_hidden + cfg.image_hidden + cfg.tab_hidden
            self.head = nn.Sequential(
                nn.Linear(width, cfg.head_hidden), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.head_hidden, 1)
            )

        def forward(self, text, image, has_image, tab):
            m = has_image.unsqueeze(1)
            img = torch.where(m, self.image(image), self.no_image.expand(len(image), -1))
            return self.head(torch.cat([self.text(text), img, self.tab(tab)], dim=1)).squeeze(1)

    return FusionMLP()


def _tensors(inp: MLPInputs, device: str):
    import torch

    return (
        torch.as_tensor(np.ascontiguousarray(inp.text, dtype=np.float32), device=device),
        torch.as_tensor(np.nan_to_num(np.ascontiguousarray(inp.image, dtype=np.float32)), device=device),
        torch.as_tensor(np.asarray(inp.has_image, dtype=bool), device=device),
        torch.as_tensor(np.ascontiguousarray(inp.tab, dtype=np.float32), device=device),
    )


def _predict(model, tensors, batch: int = 4096) -> np.ndarray:
    import torch

    model.eval()
    n = len(tensors[0])
    out = []
    with torch.no_grad():
        for s in range(0, n, batch):
            out.append(model(*(t[s : s + batch] for t in tensors)).float().cpu().numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


class _Deterministic:
    """Context: deterministic torch algorithms and a fixed thread count, restored on exit."""

    def __init__(self, threads: int):
        self.threads = threads

    def __enter__(self):
        import torch

        self._det = torch.are_deterministic_algorithms_enabled()
        self._threads = torch.get_num_threads()
        torch.use_deterministic_algorithms(True)
        if self.threads > 0:
            torch.set_num_threads(self.threads)
        return self

    def __exit__(self, *exc):
        import torch

        torch.use_deterministic_algorithms(self._det)
        torch.set_num_threads(self._threads)


def fit_fusion_mlp(
    train: MLPInputs,
    y_log1p: np.ndarray,
    valid: MLPInputs,
    y_valid_log1p: np.ndarray,
    config: MLPConfig | None = None,
    device: str = "cpu",
):
    """Train one :class:`FusionMLP` with AdamW + cosine schedule, L1 loss on ``log1p(price)``, early
    stopping on SMAPE of ``valid`` (patience ``config.patience`` epochs; best weights restored).

    Args:
        train / valid: :class:`MLPInputs` (same column layout).
        y_log1p / y_valid_log1p: (n,) float64 ``log1p(price USD)`` targets.
        config: :class:`MLPConfig` (seed included).
        device: torch device string ("cpu", "cuda").

    Returns:
        (model in eval mode, best epoch (1-based), best validation SMAPE in percent).

    Raises:
        ValueError: on length mismatches or non-finite targets.
    """
    import torch

    cfg = config or MLPConfig()
    for nm, x, y in (("train", train, y_log1p), ("valid", valid, y_valid_log1p)):
        y = np.asarray(y, dtype=np.float64)
        if len(y) != len(x.text):
            raise ValueError(f"fit_fusion_mlp: {nm} has {len(x.text)} rows but {len(y)} targets")
        if not np.isfinite(y).all():
            raise ValueError(
                f"fit_fusion_mlp: non-finite {nm} targets at rows {np.flatnonzero(~np.isfinite(y))[:5].tolist()}"
            )
    with _Deterministic(cfg.num_threads if device == "cpu" else 0):
        torch.manual_seed(cfg.seed)
        model = build_fusion_mlp(train.text.shape[1], train.image.shape[1], train.tab.shape[1], cfg).to(device)
        with torch.no_grad():
            model.head[-1].bias.fill_(float(np.median(y_log1p)))
        tr = _tensors(train, device)
        va = _tensors(valid, device)
        yt = torch.as_tensor(np.asarray(y_log1p, dtype=np.float32), device=device)
        yv = np.expm1(np.asarray(y_valid_log1p, dtype=np.float64))
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.max_epochs)
        gen = torch.Generator().manual_seed(cfg.seed)
        n = len(yt)
        best, best_epoch, best_state, bad = np.inf, 0, None, 0
        for epoch in range(1, cfg.max_epochs + 1):
            model.train()
            perm = torch.randperm(n, generator=gen).to(device)
            for s in range(0, n, cfg.batch_size):
                idx = perm[s : s + cfg.batch_size]
                if len(idx) < 2:
                    continue
                loss = torch.nn.functional.l1_loss(model(*(t[idx] for t in tr)), yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            sched.step()
            score = smape(yv, np.clip(np.expm1(_predict(model, va)), 0.01, None))
            if score < best - 1e-6:
                best, best_epoch, bad = score, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
        model.load_state_dict(best_state)
        model.eval()
    return model, best_epoch, float(best)


def train_mlp_cv(
    inputs: MLPInputs,
    y_log1p: np.ndarray,
    folds: np.ndarray,
    config: MLPConfig | None = None,
    device: str = "cpu",
    log=None,
) -> CvResult:
    """K-fold fusion MLP on ``log1p(price)`` with the same folds as the other models.

    For held-out fold f the net trains on the other folds minus an inner ``inner_valid_fraction``
    (seeded) used for early stopping; fold f is only predicted, never looked at while training.

    Args:
        inputs: :class:`MLPInputs` of the n labeled rows.
        y_log1p: (n,) float64 ``log1p(price USD)``.
        folds: (n,) int fold ids (>= 2 distinct).
        config: :class:`MLPConfig`.
        device: torch device string.
        log: optional ``callable(str)`` for progress lines.

    Returns:
        :class:`~pricing_assets.lib.models.cross_validation.CvResult` whose ``models`` are dicts
        ``{"state_dict", "dims": (d_text, d_image, d_tab), "config": dict, "tab_columns"}``
        (tensors on CPU, picklable), ``best_iterations`` the best epochs.

    Raises:
        ValueError: on length mismatch or fewer than 2 folds.
    """
    cfg = config or MLPConfig()
    y_log1p = np.asarray(y_log1p, dtype=np.float64)
    folds = np.asarray(folds)
    if not (len(y_log1p) == len(folds) == len(inputs.text)):
        raise ValueError(f"train_mlp_cv: length mismatch {len(inputs.text)}, {len(y_log1p)}, {len(folds)}")
    uniq = np.unique(folds)
    if len(uniq) < 2:
        raise ValueError(f"train_mlp_cv: needs >= 2 folds, got {uniq.tolist()}")
    t0 = time.perf_counter()
    oof = np.zeros(len(y_log1p))
    models, epochs, scores = [], [], []
    for f in uniq:
        tr_idx = np.flatnonzero(folds != f)
        inner = inner_split(len(tr_idx), cfg.inner_valid_fraction, cfg.seed + int(f))
        fit_idx, es_idx = tr_idx[~inner], tr_idx[inner]
        fold_cfg = MLPConfig(**{**asdict(cfg), "seed": cfg.seed + int(f)})
        model, epoch, _ = fit_fusion_mlp(
            inputs.take(fit_idx), y_log1p[fit_idx], inputs.take(es_idx), y_log1p[es_idx], fold_cfg, device
        )
        va = folds == f
        oof[va] = _predict(model, _tensors(inputs.take(va), device))
        models.append(
            {
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "dims": (inputs.text.shape[1], inputs.image.shape[1], inputs.tab.shape[1]),
                "config": asdict(fold_cfg),
                "tab_columns": list(inputs.tab_columns),
            }
        )
        epochs.append(int(epoch))
        scores.append(smape(np.expm1(y_log1p[va]), np.clip(np.expm1(oof[va]), 0.01, None)))
        if log:
            log(f"fusion_mlp fold {f}: best_epoch={epoch} smape={scores[-1]:.2f}")
    return CvResult(oof, models, epochs, scores, time.perf_counter() - t0)


def predict_mlp(models: list[dict], inputs: MLPInputs, device: str = "cpu") -> np.ndarray:
    """Average of the fold nets' ``log1p(price)`` predictions: (n,) float64.

    Args:
        models: ``CvResult.models`` of :func:`train_mlp_cv`.
        inputs: :class:`MLPInputs` with the same dims (and tab column order) as at training.

    Raises:
        ValueError: if ``models`` is empty or the input dims differ from the trained ones.
    """
    if not models:
        raise ValueError("predict_mlp: no models")
    dims = (inputs.text.shape[1], inputs.image.shape[1], inputs.tab.shape[1])
    preds = []
    for m in models:
        if tuple(m["dims"]) != dims:
            raise ValueError(f"predict_mlp: inputs have dims {dims}, model was trained on {tuple(m['dims'])}")
        with _Deterministic(m["config"].get("num_threads", 0) if device == "cpu" else 0):
            net = build_fusion_mlp(*dims, MLPConfig(**m["config"])).to(device)
            net.load_state_dict(m["state_dict"])
            preds.append(_predict(net, _tensors(inputs, device)))
    return np.mean(preds, axis=0)
