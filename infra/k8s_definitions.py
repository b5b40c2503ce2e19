"""Kubernetes code location: the same ``defs`` with every ``pool="gpu"`` step in its own pod on a
GPU node (``dagster_k8s.k8s_job_executor`` with ``per_step_k8s_config``), the rest on CPU nodes.

Used by the Helm chart's user deployment (``infra/helm/values.yaml``: ``-m infra.k8s_definitions``).
Needs the ``k8s`` extra (``dagster-k8s``; also in ``dev``) for ``defs``; the pure helpers below don't.
Checked without a cluster by ``pricing_tests/test_k8s.py`` (pod specs, one run per batch partition).
"""

import os

import dagster as dg

#: Node pool / scheduling of GPU steps. ``pricing/pool`` is this deployment's own node label (set it
#: on the GPU node pool; the run launcher puts run workers on ``pricing/pool: cpu``); the
#: ``nvidia.com/gpu`` resource and taint are the NVIDIA device plugin's. Adapt to the cluster.
GPU_NODE_SELECTOR = {"pricing/pool": "gpu"}
GPU_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
GPU_RESOURCES = {"limits": {"nvidia.com/gpu": 1, "memory": "24Gi"}, "requests": {"cpu": "4", "memory": "16Gi"}}
CPU_RESOURCES = {"limits": {"memory": "8Gi"}, "requests": {"cpu": "1", "memory": "2Gi"}}
#: Env var of the code location naming the CUDA image (``infra/Dockerfile.cuda``) for the GPU step
#: pods; unset: they run the code location's own image (which then must be a CUDA build).
GPU_IMAGE_ENV = "PRICING_GPU_IMAGE"


def gpu_step_keys(defs: dg.Definitions) -> list[str]:
    """Step keys (``embeddings__text__minilm_l6`` …) of the assets whose op runs in pool ``gpu``."""
    return sorted({a.node_def.name for a in defs.assets if isinstance(a, dg.AssetsDefinition) and a.node_def.pool == "gpu"})


def gpu_step_k8s_config(image: str | None = None) -> dict:
    """``dagster-k8s/config``-shaped dict for one GPU step: resources, node selector, tolerations,
    ``PRICING_DEVICE=cuda`` (fail loudly rather than silently running on CPU), and ``image`` (the
    CUDA image) when given."""
    container: dict = {"resources": GPU_RESOURCES, "env": [{"name": "PRICING_DEVICE", "value": "cuda"}]}
    if image:
        container["image"] = image
    return {
        "container_config": container,
        "pod_spec_config": {"node_selector": GPU_NODE_SELECTOR, "tolerations": GPU_TOLERATIONS},
    }


def executor_config(defs: dg.Definitions, gpu_image: str | None = None) -> dict:
    """Config of ``k8s_job_executor``: CPU defaults for every step, GPU config per GPU step
    (``per_step_k8s_config`` is keyed by op name, which is the step key of these assets)."""
    return {
        "max_concurrent": 8,
        "step_k8s_config": {"container_config": {"resources": CPU_RESOURCES}},
        "per_step_k8s_config": {key: gpu_step_k8s_config(gpu_image) for key in gpu_step_keys(defs)},
    }


def build_k8s_defs(gpu_image: str | None = None) -> dg.Definitions:
    """``defs`` of ``pricing_assets.definitions`` with only the executor swapped for ``k8s_job_executor``
    configured by :func:`executor_config` (``gpu_image``: default ``$PRICING_GPU_IMAGE``).

    Every other field (assets, checks, jobs, sensors, schedules, resources, loggers, metadata,
    component tree) is the base object's own. ``Definitions.merge`` can't do this (it refuses two
    executors, and the base has the in-process one), so the record is copied with ``replace``, the
    helper ``Definitions`` uses for its own ``map_asset_specs`` / ``with_definition_metadata_update``.
    """
    from dagster_k8s import k8s_job_executor
    from dagster_shared.record import replace

    from pricing_assets.definitions import defs as base

    gpu_image = gpu_image or os.environ.get(GPU_IMAGE_ENV) or None
    return replace(base, executor=k8s_job_executor.configured(executor_config(base, gpu_image)))


try:
    import dagster_k8s  # noqa: F401
except ImportError:  # a venv without the k8s extra: helpers only (loading this module as a code location then finds no defs)
    pass
else:
    defs = build_k8s_defs()
