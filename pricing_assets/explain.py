"""The reasons behind a served price, read from the stored assets (``pricing explain``, ``pricing
predictions --needs-review``): nothing is refitted or re-embedded.

A product's price, interval, batch and model version come from ``price_predictions``; its
comparables from its batch's ``price_explanations`` partition, its drivers from ``price_drivers``.
"""

import contextlib
import io

import dagster as dg
import pandas as pd

from pricing_assets.instance_state import latest_materialization


def load_stored(defs: dg.Definitions, instance: dg.DagsterInstance, asset: str, partition: str | None = None):
    """The stored value of ``asset`` (of one ``partition``) through its IO manager. ``load_asset_value``
    logs a DEBUG "Loading file from ..." line per read on a console logger of its own; that line is
    not for the CLI's user, so stderr is held back while it reads (an error still raises)."""
    with contextlib.redirect_stderr(io.StringIO()):
        return defs.load_asset_value(asset, instance=instance, partition_key=partition)


class UnknownProduct(KeyError):
    """No served price for this ``sample_id`` (not in ``price_predictions``)."""


def _batch_rows(defs: dg.Definitions, instance: dg.DagsterInstance, asset: str, batch: str) -> pd.DataFrame | None:
    """The stored ``asset`` partition ``batch``, or None when it was never materialized."""
    _, rec = latest_materialization(instance, asset, batch)
    if rec is None:
        return None
    return load_stored(defs, instance, asset, batch)


def explain_product(instance: dg.DagsterInstance, defs: dg.Definitions, sample_id: str) -> dict:
    """Everything known about the served price of ``sample_id``.

    Returns:
        ``{sample_id, price, price_low, price_high, model_version, batch, comparables: [{sample_id,
        item_name, price, similarity, view}], drivers: [{feature, value, effect}], base_price, notes}``:
        prices in USD (``price_low`` / ``price_high`` None for a model without intervals); comparables
        by rank (most similar first), drivers by |effect| (largest first), ``effect`` multiplies the
        price; ``base_price`` (USD) is what the drivers' model starts from; ``notes`` says what is
        missing (a batch whose explanations were not built, drivers of another model version).

    Raises:
        UnknownProduct: ``sample_id`` has no served price.
    """
    _, rec = latest_materialization(instance, "price_predictions")
    if rec is None:
        raise UnknownProduct("no prices are stored yet: run `pricing materialize` before `pricing explain`")
    preds = load_stored(defs, instance, "price_predictions")
    row = preds.loc[preds["sample_id"].astype(str) == str(sample_id)]
    if row.empty:
        raise UnknownProduct(
            f"no served price for sample_id {sample_id!r} ({len(preds)} products are priced; "
            "a labeled product has its own price)"
        )
    r = row.iloc[0]
    version, batch = str(r["model_version"]), str(r["batch"])

    def _usd(v):
        return None if v is None or pd.isna(v) else round(float(v), 2)

    out = {
        "sample_id": str(sample_id),
        "price": _usd(r["price"]),
        "price_low": _usd(r.get("price_low")),
        "price_high": _usd(r.get("price_high")),
        "model_version": version,
        "batch": batch,
        "comparables": [],
        "drivers": [],
        "base_price": None,
        "notes": [],
    }
    comps = _batch_rows(defs, instance, "price_explanations", batch)
    if comps is None:
        out["notes"].append(f"no comparables stored for batch {batch} (materialize price_explanations)")
    else:
        mine = comps.loc[comps["sample_id"].astype(str) == str(sample_id)].sort_values("rank")
        out["comparables"] = [
            {
                "sample_id": str(c.comparable_id),
                "item_name": str(c.comparable_name),
                "price": round(float(c.comparable_price), 2),
                "similarity": round(float(c.similarity), 4),
                "view": str(c.view),
            }
            for c in mine.itertuples()
        ]
    drivers = _batch_rows(defs, instance, "price_drivers", batch)
    if drivers is None:
        out["notes"].append(f"no drivers stored for batch {batch} (materialize price_drivers)")
    else:
        mine = drivers.loc[drivers["sample_id"].astype(str) == str(sample_id)].sort_values("rank")
        other = sorted(set(mine["model_version"].astype(str)) - {version})
        if other:
            out["notes"].append(f"the stored drivers explain model {other[0]}, not {version}: re-score batch {batch}")
        else:
            out["drivers"] = [
                {"feature": str(d.feature), "value": str(d.value), "effect": round(float(d.effect), 4)}
                for d in mine.itertuples()
            ]
            if len(mine):
                out["base_price"] = round(float(mine["base_price"].iloc[0]), 2)
                out["drivers_model"] = str(mine["model"].iloc[0])
    return out


def render_explanation(e: dict) -> str:
    """``explain_product``'s dict as the text ``pricing explain`` prints."""
    from pricing_assets.lib.serving.drivers import format_effect

    interval = (
        f" (80 % interval {e['price_low']:.2f} - {e['price_high']:.2f} USD)" if e["price_low"] is not None else ""
    )
    lines = [
        f"sample_id {e['sample_id']}: {e['price']:.2f} USD{interval}",
        f"model {e['model_version']}, batch {e['batch']}",
    ]
    if e["comparables"]:
        lines.append("comparables (labeled products most like it):")
        for i, c in enumerate(e["comparables"], 1):
            name = c["item_name"] if len(c["item_name"]) <= 70 else c["item_name"][:69] + "…"
            lines.append(
                f"  {i}. {c['price']:>9.2f} USD  similarity {c['similarity']:.2f} ({c['view']})  {c['sample_id']}  {name}"
            )
    if e["drivers"]:
        lines.append(f"drivers ({e.get('drivers_model', 'model')} starts from {e['base_price']:.2f} USD):")
        for d in e["drivers"]:
            lines.append(f"  {format_effect(d['effect']):>7}  {d['feature']} = {d['value']}")
    lines += [f"note: {n}" for n in e["notes"]]
    return "\n".join(lines)


def review_list(
    instance: dg.DagsterInstance, defs: dg.Definitions, max_width_ratio: float, min_similarity: float
) -> pd.DataFrame:
    """``lib.serving.review.needs_review`` over the stored ``price_predictions`` and the comparables of
    every batch they come from (a batch without stored comparables flags its rows "no comparables")."""
    from pricing_assets.lib.serving.review import needs_review

    preds = load_stored(defs, instance, "price_predictions")
    frames = []
    for batch, ids in preds.groupby(preds["batch"].astype(str))["sample_id"]:
        comps = _batch_rows(defs, instance, "price_explanations", batch)
        if comps is not None:  # a product's comparables from the batch that priced it
            frames.append(comps[comps["sample_id"].astype(str).isin(set(ids.astype(str)))])
    comps = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame({"sample_id": pd.Series([], dtype=str), "rank": [], "similarity": []})
    )
    return needs_review(preds, comps, max_width_ratio, min_similarity)
