"""The Kubernetes executor of the code location (``PRICING_EXECUTOR=k8s``): every step its own pod
(``dagster_k8s.k8s_job_executor``), every ``pool="gpu"`` step on a GPU node with the CUDA image
(``per_step_k8s_config``), the rest on CPU nodes. ``pricing_assets.definitions.build_defs`` adds it
when the setting asks for it; the helpers below need no ``dagster-k8s`` (the ``k8s`` extra), the
executor itself does. Checked without a cluster by ``pricing_tests/test_k8s.py``.
"""

import dagster as dg

#: Node pool / scheduling of GPU steps. ``pricing/pool`` is this deployment's own node label (set it
#: on the GPU node pool; the run launcher puts run workers on ``pricing/pool: cpu``); the
#: ``nvidia.com/gpu`` resource and taint are the NVIDIA device plugin's. Adapt to the cluster.
GPU_NODE_SELECTOR = {"pricing/pool": "gpu"}
GPU_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
GPU_RESOURCES = {"limits": {"nvidia.com/gpu": 1, "memory": "24Gi"}, "requests": {"cpu": "4", "memory": "16Gi"}}
CPU_RESOURCES = {"limits": {"memory": "8Gi"}, "requests": {"cpu": "1", "memory": "2Gi"}}


def gpu_step_keys(defs: dg.Definitions) -> list[str]:
    """Step keys (``embeddings__text__minilm_l6`` …) of the assets whose op runs in pool ``gpu``."""
    return sorted(
        {a.node_def.name for a in defs.assets if isinstance(a, dg.AssetsDefinition) and a.node_def.pool == "gpu"}
    )


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


def k8s_executor(defs: dg.Definitions, gpu_image: str | None = None) -> dg.ExecutorDefinition:
    """``k8s_job_executor`` configured by :func:`executor_config` for the GPU steps of ``defs``.

    Raises:
        ModuleNotFoundError: ``dagster-k8s`` is not installed (``pip install -e '.[k8s]'``).
    """
    try:
        from dagster_k8s import k8s_job_executor
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(f"PRICING_EXECUTOR=k8s needs dagster-k8s: pip install -e '.[k8s]' ({exc})") from exc
    return k8s_job_executor.configured(executor_config(defs, gpu_image))
