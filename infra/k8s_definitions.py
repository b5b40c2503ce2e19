"""Kubernetes code location: the same ``defs`` with every ``pool="gpu"`` step in its own pod on a
GPU node (``dagster_k8s.k8s_job_executor`` with ``per_step_k8s_config``), the rest on CPU nodes.

Used by the Helm chart's user deployment (``infra/helm/values.yaml``: ``-m infra.k8s_definitions``).
Needs ``dagster-k8s`` (installed in the image, not in the dev venv); the pure helpers below don't.
"""

from __future__ import annotations

import dagster as dg

#: Node pool / scheduling of GPU steps. Labels follow GKE (``cloud.google.com/gke-accelerator``)
#: and the NVIDIA device plugin (``nvidia.com/gpu`` resource and taint); adapt to the cluster.
GPU_NODE_SELECTOR = {"pricing/pool": "gpu"}
GPU_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
GPU_RESOURCES = {"limits": {"nvidia.com/gpu": 1, "memory": "24Gi"}, "requests": {"cpu": "4", "memory": "16Gi"}}
CPU_RESOURCES = {"limits": {"memory": "8Gi"}, "requests": {"cpu": "1", "memory": "2Gi"}}


def gpu_step_keys(defs: dg.Definitions) -> list[str]:
    """Step keys (``embeddings__text__minilm_l6`` …) of the assets whose op runs in pool ``gpu``."""
    return sorted({a.node_def.name for a in defs.assets if isinstance(a, dg.AssetsDefinition) and a.node_def.pool == "gpu"})


def gpu_step_k8s_config() -> dict:
    """``dagster-k8s/config``-shaped dict for one GPU step: resources, node selector, tolerations,
    ``PRICING_DEVICE=cuda`` (fail loudly rather than silently running on CPU)."""
    return {
        "container_config": {"resources": GPU_RESOURCES, "env": [{"name": "PRICING_DEVICE", "value": "cuda"}]},
        "pod_spec_config": {"node_selector": GPU_NODE_SELECTOR, "tolerations": GPU_TOLERATIONS},
    }


def executor_config(defs: dg.Definitions) -> dict:
    """Config of ``k8s_job_executor``: CPU defaults for every step, GPU config per GPU step."""
    return {
        "max_concurrent": 8,
        "step_k8s_config": {"container_config": {"resources": CPU_RESOURCES}},
        "per_step_k8s_config": {key: gpu_step_k8s_config() for key in gpu_step_keys(defs)},
    }


def build_k8s_defs() -> dg.Definitions:
    """``defs`` of ``pricing_assets.definitions`` with the Kubernetes per-step executor."""
    from dagster_k8s import k8s_job_executor

    from pricing_assets.definitions import defs as base

    return dg.Definitions(
        assets=base.assets, asset_checks=base.asset_checks, resources=base.resources, sensors=base.sensors,
        schedules=base.schedules, jobs=base.jobs, executor=k8s_job_executor.configured(executor_config(base)),
    )


if __name__ != "__main__":
    try:
        import dagster_k8s  # noqa: F401
    except ImportError:  # dev venv / tests: helpers only
        pass
    else:
        defs = build_k8s_defs()
