"""IO managers on universal-pathlib: one base path (local or ``s3://…``) for every stored asset.

* ``parquet``  – pandas DataFrames (``.parquet``; embedding vectors as list columns); reports
  ``dagster/row_count`` for every stored frame
* ``faiss``    – a FAISS index (``faiss.serialize_index`` bytes, ``.faiss``)
* ``lightgbm`` – a list of LightGBM boosters (``model_to_string``; JSON list, ``.lgbm.json``)
* ``pickle``   – anything else (small dicts, torch state dicts), ``.pkl``
* ``served_log`` – the served-price log: parquet like ``parquet``, and every model version's frame of
  a partition kept beside it (``<partition>.versions/<model_version>.parquet``); the stored
  partition is the union of its versions, so a re-scored batch adds to its history

Paths are ``<base>/<asset key parts>/<partition>.<ext>``: derived from the asset key and partition,
never from the clock, so re-runs overwrite in place.
"""

import io
import json
import pickle
from typing import Any, Optional

import dagster as dg
from pydantic import Field
from upath import UPath

from pricing_assets.lib.runtime.atomic_write import write_bytes_atomic
from pricing_assets.resources import storage_options_for


class _BaseIO(dg.UPathIOManager):
    def _write_bytes(self, path: UPath, data: bytes) -> None:
        """Replace ``path`` atomically (``lib.runtime.atomic_write``): a reader never finds it missing or half-written."""
        write_bytes_atomic(str(path), data, dict(getattr(path, "storage_options", {}) or {}))


class ParquetIOManager(_BaseIO):
    """pandas DataFrame <-> parquet (pyarrow)."""

    extension = ".parquet"

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        """Write ``obj`` (pandas DataFrame, index dropped) as parquet to ``path``, atomically.

        Raises:
            TypeError: ``obj`` is not a DataFrame (the message names the asset)."""
        import pandas as pd

        if not isinstance(obj, pd.DataFrame):
            raise TypeError(
                f"{context.asset_key.to_user_string()}: parquet IO manager needs a DataFrame, got {type(obj)}"
            )
        buf = io.BytesIO()
        obj.to_parquet(buf, index=False)
        self._write_bytes(path, buf.getvalue())

    def get_metadata(self, context: dg.OutputContext, obj: Any) -> dict:
        """``dagster/row_count`` of every stored frame (the standard key: catalogue, UI plots over time)."""
        return {"dagster/row_count": len(obj)} if obj is not None else {}

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        """The stored frame (pandas DataFrame) at ``path``."""
        import pandas as pd

        return pd.read_parquet(io.BytesIO(path.read_bytes()))


class FaissIOManager(_BaseIO):
    """``faiss.Index`` <-> bytes of ``faiss.serialize_index``."""

    extension = ".faiss"

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        """Write the ``faiss.Index`` ``obj`` (``faiss.serialize_index`` bytes) to ``path``, atomically."""
        import faiss

        self._write_bytes(path, faiss.serialize_index(obj).tobytes())

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        """The ``faiss.Index`` at ``path``."""
        import faiss
        import numpy as np

        return faiss.deserialize_index(np.frombuffer(path.read_bytes(), dtype=np.uint8))


class LightGBMIOManager(_BaseIO):
    """``list[lightgbm.Booster]`` (fold or refit boosters; ``best_iteration`` kept, 0 = every tree) <->
    JSON list of ``model_to_string()`` texts."""

    extension = ".lgbm.json"

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        """Write ``obj`` (a ``lightgbm.Booster`` or a list of them) as a JSON list of ``model_to_string`` texts with their ``best_iteration``, atomically."""
        models = obj if isinstance(obj, list) else [obj]
        payload = [{"model": m.model_to_string(), "best_iteration": int(m.best_iteration)} for m in models]
        self._write_bytes(path, json.dumps(payload).encode())

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        """The list of ``lightgbm.Booster`` at ``path``, ``best_iteration`` restored."""
        import lightgbm as lgb

        out = []
        for item in json.loads(path.read_bytes()):
            b = lgb.Booster(model_str=item["model"])
            b.best_iteration = item["best_iteration"]
            out.append(b)
        return out


class PickleIOManager(_BaseIO):
    """Any picklable object (small model bundles, state dicts)."""

    extension = ".pkl"

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        """Write ``pickle.dumps(obj)`` (highest protocol) to ``path``, atomically."""
        self._write_bytes(path, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        """The unpickled object at ``path`` (trusted storage only: pickle runs code)."""
        return pickle.loads(path.read_bytes())


class ServedPriceLogIOManager(ParquetIOManager):
    """An append-only log over parquet: each stored frame (one ``model_version``) is kept under
    ``<partition>.versions/<model_version>.parquet`` and never overwritten by another version; the
    partition's own file is the union of every version stored so far (what inputs load)."""

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        """Keep ``obj`` as its model version's frame, then rewrite the partition's union, atomically.

        Raises:
            TypeError: ``obj`` is not a DataFrame.
            ValueError: ``obj`` does not hold exactly one ``model_version`` (an empty frame is kept
                under ``none``).
        """
        import pandas as pd

        if not isinstance(obj, pd.DataFrame):
            raise TypeError(
                f"{context.asset_key.to_user_string()}: served-price log needs a DataFrame, got {type(obj)}"
            )
        versions = sorted(set(obj["model_version"].astype(str))) if len(obj) else ["none"]
        if len(versions) != 1:
            raise ValueError(
                f"{context.asset_key.to_user_string()}: one model version per stored frame, got {versions}"
            )
        folder = path.parent / f"{path.stem}.versions"
        super().dump_to_path(context, obj, folder / f"{versions[0]}.parquet")
        frames = [pd.read_parquet(io.BytesIO(p.read_bytes())) for p in sorted(folder.glob("*.parquet"))]
        super().dump_to_path(context, pd.concat(frames, ignore_index=True), path)


_KINDS = {
    "parquet": ParquetIOManager,
    "served_log": ServedPriceLogIOManager,
    "faiss": FaissIOManager,
    "lightgbm": LightGBMIOManager,
    "pickle": PickleIOManager,
}


class PricingIOManager(dg.ConfigurableIOManagerFactory):
    """Configurable factory: ``kind`` picks the format, ``base_path`` is local or ``s3://bucket/prefix``.

    Credentials for S3 come from the environment (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``),
    the endpoint from ``endpoint_url`` (any S3-compatible store).
    """

    base_path: str = Field(description="local folder or s3://bucket/prefix")
    kind: str = Field(default="pickle", description="parquet | served_log | faiss | lightgbm | pickle")
    endpoint_url: Optional[str] = None

    def create_io_manager(self, context) -> dg.UPathIOManager:
        """The IO manager of ``kind`` rooted at ``base_path``.

        Raises:
            ValueError: ``kind`` is not one of parquet / served_log / faiss / lightgbm / pickle.
        """
        if self.kind not in _KINDS:
            raise ValueError(f"unknown IO manager kind {self.kind!r}; expected one of {sorted(_KINDS)}")
        return _KINDS[self.kind](
            base_path=UPath(self.base_path, **storage_options_for(self.base_path, self.endpoint_url))
        )
