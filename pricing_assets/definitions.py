"""The code location: ``defs`` = every asset, check, resource, IO manager, sensor and schedule.

The definitions live in ``pricing_assets/defs/`` (one module per stage, each with one
``@dg.definitions`` function) and are loaded with :func:`dagster.load_from_defs_folder`, the ``dg``
project layout (``[tool.dg]`` in ``pyproject.toml``). On top of what the folder gives, one policy is
applied to every asset here: the automation conditions (``pricing_assets/automation.py``), owners
and code references.
"""

from pathlib import Path

import dagster as dg

from pricing_assets.asset_policy import apply_asset_policy
from pricing_assets.settings import Settings, overrides

#: The ``dg`` project root (holds ``pyproject.toml`` with ``[tool.dg]``).
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def build_defs(settings: Settings | None = None, registry: dict | None = None) -> dg.Definitions:
    """The ``Definitions`` of ``pricing_assets/defs/`` with the asset policy applied.

    Args:
        settings: default: from the environment at this call (``pricing_assets/settings.py``).
        registry: ``{name: EmbeddingModelSpec}``; default: ``pricing_assets/embedding_models.toml``.
    """
    with overrides(settings, registry):
        loaded = dg.load_from_defs_folder(path_within_project=PROJECT_ROOT)
    return apply_asset_policy(loaded)


defs = build_defs()
