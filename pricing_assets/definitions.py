"""The code location: ``defs`` = every asset, check, resource, IO manager, sensor and schedule.

The definitions live in ``pricing_assets/defs/`` (one module per stage, each with one
``@dg.definitions`` function) and are loaded with :func:`dagster.load_from_defs_folder`, the ``dg``
project layout (``[tool.dg]`` in ``pyproject.toml``). On top of what the folder gives, one policy is
applied to every asset here: the automation conditions (``pricing_assets/automation.py``), owners
and code references.
"""

import dagster as dg

from pricing_assets.asset_policy import apply_asset_policy
from pricing_assets.lib.embeddings.registry import load_registry, select_models
from pricing_assets.settings import REPO_ROOT, Settings, load_settings, overrides


def build_defs(settings: Settings | None = None, registry: dict | None = None) -> dg.Definitions:
    """The ``Definitions`` of ``pricing_assets/defs/`` with the asset policy applied.

    Args:
        settings: default: from the environment at this call (``pricing_assets/settings.py``);
            ``executor="k8s"`` adds the Kubernetes executor (``pricing_assets/k8s_executor.py``).
        registry: ``{name: EmbeddingModelSpec}``; default: ``pricing_assets/embedding_models.toml``
            with ``settings.embedding_models`` (``PRICING_EMBEDDING_MODELS``) enabled when set.

    Raises:
        RegistryError: ``PRICING_EMBEDDING_MODELS`` names an unknown entry or no text model.
    """
    # resolved once here, read by every defs/ module (one TOML read and one env read per load)
    settings = settings or load_settings()
    registry = registry if registry is not None else select_models(load_registry(), settings.embedding_models)
    with overrides(settings, registry):
        loaded = dg.load_from_defs_folder(
            path_within_project=REPO_ROOT
        )  # the dg project root: pyproject.toml [tool.dg]
    defs = apply_asset_policy(loaded, git_url=settings.git_url, git_branch=settings.git_branch)
    if settings.executor == "k8s":  # PRICING_EXECUTOR=k8s: every step its own pod (defs/resources.py set none)
        from pricing_assets.k8s_executor import k8s_executor

        defs = dg.Definitions.merge(defs, dg.Definitions(executor=k8s_executor(defs, settings.gpu_image)))
    return defs


defs = build_defs()
