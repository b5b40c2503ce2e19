"""Kubernetes scale-out without a cluster: the code location with ``PRICING_EXECUTOR=k8s`` loads with the real
``dagster-k8s``, the step pods that dagster-k8s builds for it carry the right resources, and a
backfill of N catalog batches becomes N runs, each launched as its own Kubernetes Job.

Nothing here talks to Kubernetes: ``DagsterKubernetesClient.production_client`` is wrapped so that
the run launcher and the step handler get a fake ``BatchV1Api`` (a ``MagicMock``) that records the
``V1Job`` bodies they would create. Everything else is dagster / dagster-k8s code: the executor
built from the code location's ``k8s_job_executor`` config, ``K8sStepHandler.launch_step`` merging
run launcher, code-location and per-step config, ``construct_dagster_k8s_job``, the backfill daemon
and the run-queue daemon. The run launcher and the code location's container context are what the
``dagster/dagster`` Helm chart (1.13) renders from ``infra/helm/values.yaml``
(:func:`helm_run_launcher_config`, :func:`helm_container_context`).

``infra/Dockerfile.cuda`` is checked for structure only (no docker here).
"""

import functools
import logging
import os
import sys
import tempfile
from pathlib import Path
from unittest import mock

import dagster as dg
import pytest
import yaml
from dagster._core.system_config.objects import ResolvedRunConfig
from dagster_k8s.client import DagsterKubernetesClient

from pricing_assets import k8s_executor as k8s
from pricing_assets.partitions import CATALOG_BATCHES
from pricing_assets.settings import load_settings
from pricing_tests.helpers import TEXT_MODEL

REPO = Path(__file__).resolve().parent.parent
VALUES = yaml.safe_load((REPO / "infra" / "helm" / "values.yaml").read_text())
DEPLOYMENT = VALUES["dagster-user-deployments"]["deployments"][0]
#: The image of the code location (CPU) and the CUDA image its GPU steps run on (values.yaml env).
IMAGE = f"{DEPLOYMENT['image']['repository']}:{DEPLOYMENT['image']['tag']}"
CUDA_IMAGE = next(e["value"] for e in DEPLOYMENT["env"] if e["name"] == "PRICING_GPU_IMAGE")
NAMESPACE = "pricing"
LOCATION = DEPLOYMENT["name"]
#: A kubeconfig for a cluster that is never contacted (kubernetes.config only parses it).
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none, namespace: pricing}}]
current-context: none
"""

GPU_STEPS = [
    ("catalog_batch_job", step)
    for step in (f"embeddings__text__{TEXT_MODEL}", "embeddings__image__effnet_lite0", "ocr_text")
]
CPU_STEPS = [
    ("catalog_batch_job", "raw_catalog"),
    ("catalog_batch_job", "catalog_items"),
    ("catalog_batch_job", "product_images"),
    ("nightly_retrain_job", "products"),
    ("nightly_retrain_job", "lightgbm_model"),
]


def helm_run_launcher_config(values: dict, kubeconfig_file: str) -> dict:
    """The ``K8sRunLauncher`` config the chart renders (``_run-launcher.tpl``): ``runK8sConfig``'s
    camelCase top-level keys become snake_case (dagster-k8s snake-cases the keys inside),
    ``envSecrets`` names become ``env_secrets``; the chart adds the instance ConfigMap, the service
    account and ``dagster_home``. ``kubeconfig_file`` stands in for the in-cluster config."""
    rl = values["runLauncher"]["config"]["k8sRunLauncher"]
    top = {
        "containerConfig": "container_config",
        "podSpecConfig": "pod_spec_config",
        "podTemplateSpecMetadata": "pod_template_spec_metadata",
        "jobSpecConfig": "job_spec_config",
        "jobMetadata": "job_metadata",
    }
    return {
        "instance_config_map": "pricing-dagster-instance",
        "dagster_home": "/opt/dagster/dagster_home",
        "service_account_name": values["global"]["serviceAccountName"],
        "job_namespace": NAMESPACE,
        "load_incluster_config": False,
        "kubeconfig_file": kubeconfig_file,
        "env_secrets": [s["name"] for s in rl.get("envSecrets", [])],
        "run_k8s_config": {top[key]: value for key, value in rl.get("runK8sConfig", {}).items()},
    }


def helm_container_context(values: dict) -> dict:
    """The container context the chart gives the code server (``DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT``,
    ``dagsterUserDeployments.k8sContainerContext``); dagster-k8s applies it to every run and step pod
    of the code location, on top of the run launcher's config."""
    dep = values["dagster-user-deployments"]["deployments"][0]
    return {
        "k8s": {
            "image_pull_policy": dep["image"]["pullPolicy"],
            "env_config_maps": [f"pricing-dagster-{dep['name']}-user-env"],
            "env_secrets": [s["name"] for s in dep.get("envSecrets", [])],
            "resources": dep.get("resources", {}),
            "namespace": NAMESPACE,
            "service_account_name": values["global"]["serviceAccountName"],
            "env": dep.get("env", []),
            "run_k8s_config": {"pod_spec_config": {"automount_service_account_token": True}},
        }
    }


@pytest.fixture(scope="module")
def batch_api():
    """The fake ``BatchV1Api`` of every dagster-k8s client created while the module runs."""
    api = mock.MagicMock()
    real = DagsterKubernetesClient.production_client

    def production_client(batch_api_override=None, core_api_override=None):
        return real(batch_api_override=api, core_api_override=core_api_override)

    with mock.patch.object(DagsterKubernetesClient, "production_client", production_client):
        yield api


@pytest.fixture(scope="module")
def instance(tmp_path_factory, batch_api):
    """A temporary instance configured like the Helm release: ``K8sRunLauncher``, the queued run
    coordinator and the ``concurrency`` block of values.yaml (runs and pools, as the chart's
    ``_concurrency.tpl`` renders them). Its SQLite files go to tmpfs when there is one (creating them
    is fsync-bound: seconds on a busy disk)."""
    kubeconfig = tmp_path_factory.mktemp("kube") / "config"
    kubeconfig.write_text(KUBECONFIG)
    concurrency = VALUES["concurrency"]
    overrides = {
        "run_launcher": {
            "module": "dagster_k8s",
            "class": "K8sRunLauncher",
            "config": helm_run_launcher_config(VALUES, str(kubeconfig)),
        },
        "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"},
        "concurrency": {
            "runs": {"max_concurrent_runs": concurrency["runs"]["maxConcurrentRuns"]},
            "pools": {"default_limit": concurrency["pools"]["defaultLimit"]},
        },
    }
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None) as home:
        with dg.instance_for_test(overrides=overrides, temp_dir=home) as inst:
            yield inst


@pytest.fixture(scope="module")
def k8s_defs():
    """The Kubernetes ``Definitions`` as the Helm deployment loads them (``PRICING_EXECUTOR=k8s``,
    ``PRICING_GPU_IMAGE`` set)."""
    return k8s_build({"PRICING_GPU_IMAGE": CUDA_IMAGE})


def k8s_build(env: dict) -> dg.Definitions:
    """``build_defs`` with ``PRICING_EXECUTOR=k8s`` and ``env`` on top of this process's environment."""
    from pricing_assets.definitions import build_defs

    return build_defs(load_settings({**os.environ, "PRICING_EXECUTOR": "k8s", **env}))


def created_jobs(batch_api) -> list:
    """The ``V1Job`` bodies passed to ``create_namespaced_job`` since the last reset, with their namespace."""
    calls = [c for c in batch_api.method_calls if c[0] == "create_namespaced_job"]
    return [(kwargs["body"], kwargs["namespace"]) for _, _, kwargs in calls]


@pytest.fixture(scope="module")
def step_job(instance, batch_api, k8s_defs):
    """``step_job(job_name, step_key)``: the ``V1Job`` that ``k8s_job_executor`` launches for
    ``step_key`` in a run of ``job_name``.

    Same objects as in a run worker: the executor from the job's executor definition and resolved
    run config, a ``StepHandlerContext`` over the job's execution plan, and
    ``K8sStepHandler.launch_step`` (as in dagster-k8s's own ``test_executor.py``). One run, executor
    and plan per job, shared by its steps."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.execution.api import create_execution_plan
    from dagster._core.execution.context.system import PlanData, PlanOrchestrationContext
    from dagster._core.execution.context_creation_job import create_context_free_log_manager
    from dagster._core.execution.retries import RetryMode
    from dagster._core.executor.init import InitExecutorContext
    from dagster._core.executor.step_delegating.step_handler.base import StepHandlerContext
    from dagster._core.test_utils import create_run_for_test
    from dagster._grpc.types import ExecuteStepArgs

    repo = ReconstructableRepository.for_module(
        "infra.k8s_definitions",
        "defs",
        working_directory=str(REPO),
        container_image=IMAGE,
        container_context=helm_container_context(VALUES),
    )

    @functools.cache
    def per_job(job_name: str):
        recon_job = repo.get_reconstructable_job(job_name)
        origin = recon_job.get_python_origin()
        job_def = k8s_defs.resolve_job_def(job_name)
        run = create_run_for_test(instance, job_name=job_name, job_code_origin=origin)
        executor_def = job_def.executor_def
        exec_config = ResolvedRunConfig.build(job_def, {}).execution.execution_engine_config
        executor = executor_def.executor_creation_fn(
            InitExecutorContext(
                job=recon_job, executor_def=executor_def, executor_config=exec_config, instance=instance
            )
        )
        plan = create_execution_plan(recon_job)
        plan_context = PlanOrchestrationContext(
            plan_data=PlanData(
                job=recon_job,
                dagster_run=run,
                instance=instance,
                execution_plan=plan,
                raise_on_error=True,
                retry_mode=RetryMode.DISABLED,
            ),
            log_manager=create_context_free_log_manager(instance, run),
            executor=executor,
            output_capture=None,
        )
        return origin, run, executor, plan, plan_context

    def launch(job_name: str, step_key: str):
        origin, run, executor, plan, plan_context = per_job(job_name)
        assert step_key in plan.step_keys_to_execute, (step_key, plan.step_keys_to_execute)
        context = StepHandlerContext(
            instance=instance,
            plan_context=plan_context,
            steps=plan.steps,
            execute_step_args=ExecuteStepArgs(origin, run.run_id, [step_key]),
            dagster_run=run,
        )
        batch_api.reset_mock()
        list(executor._step_handler.launch_step(context))  # noqa: SLF001 - the handler a StepDelegatingExecutor drives
        ((job, namespace),) = created_jobs(batch_api)
        assert namespace == NAMESPACE
        assert (
            job.metadata.labels["dagster/op"] == step_key
            and job.metadata.labels["app.kubernetes.io/component"] == "step_worker"
        )
        return job

    return launch


def container_env(container) -> list[tuple[str, str]]:
    return [(e.name, e.value) for e in container.env or []]


def resources_of(container) -> dict:
    """``{"limits": {...}, "requests": {...}}`` with every quantity as a string (as Kubernetes reads it)."""
    res = container.resources
    return {
        "limits": {k: str(v) for k, v in (res.limits or {}).items()},
        "requests": {k: str(v) for k, v in (res.requests or {}).items()},
    }


def as_strings(resources: dict) -> dict:
    return {kind: {k: str(v) for k, v in values.items()} for kind, values in resources.items()}


# --- the code location ----------------------------------------------------------------------------


def test_k8s_definitions_load_with_the_k8s_executor_and_nothing_else_changed():
    from dagster._config import process_config
    from dagster_k8s import k8s_job_executor

    from infra.k8s_definitions import defs as module_defs  # the module attribute the run reconstruction below loads
    from pricing_assets.definitions import defs as base

    defs = k8s_build({})  # what the Helm user deployment loads: `-m pricing_assets.definitions`, PRICING_EXECUTOR=k8s
    dg.Definitions.validate_loadable(defs)
    assert (
        base.executor.name == "in_process"
        and defs.executor.name == module_defs.executor.name == k8s_job_executor.name == "k8s"
    )
    assert defs.component_tree is not None
    graph, base_graph = defs.resolve_asset_graph(), base.resolve_asset_graph()
    assert (
        graph.get_all_asset_keys() == base_graph.get_all_asset_keys()
        and graph.asset_check_keys == base_graph.asset_check_keys
    )
    for field in ("jobs", "sensors", "schedules"):
        assert [d.name for d in getattr(defs, field)] == [d.name for d in getattr(base, field)], field
    assert set(defs.resources) == set(base.resources)

    expected = process_config(k8s_job_executor.config_schema.config_type, k8s.executor_config(base))
    assert expected.success, expected.errors
    for job_name in ("catalog_batch_job", "nightly_retrain_job", "scoring_job"):
        job = defs.resolve_job_def(job_name)
        assert job.executor_def.name == "k8s", job_name
        assert ResolvedRunConfig.build(job, {}).execution.execution_engine_config == expected.value, job_name
    steps = set(k8s.executor_config(base)["per_step_k8s_config"])
    assert (
        steps
        == set(k8s.gpu_step_keys(base))
        >= {"ocr_text", f"embeddings__text__{TEXT_MODEL}", "embeddings__image__effnet_lite0"}
    )


def test_gpu_image_comes_from_the_environment():
    def per_step_config(env: dict) -> dict:
        return k8s_build(env).executor.config_schema.resolve_config({}).value["config"]["per_step_k8s_config"]

    assert {
        cfg["container_config"].get("image")
        for cfg in per_step_config({"PRICING_GPU_IMAGE": "registry.example.com/x:cuda"}).values()
    } == {"registry.example.com/x:cuda"}
    assert {cfg["container_config"].get("image") for cfg in per_step_config({}).values()} == {None}
    with pytest.raises(ValueError, match="PRICING_EXECUTOR"):
        load_settings({"PRICING_EXECUTOR": "celery"})


# --- step pods ----------------------------------------------------------------------------------


def _pod_of(step_job, job_name: str, step_key: str):
    """(pod spec, its first container) of the Job dagster-k8s builds for ``step_key``."""
    pod = step_job(job_name, step_key).spec.template.spec
    return pod, pod.containers[0]


@pytest.mark.parametrize(("job_name", "step_key"), GPU_STEPS, ids=[s for _, s in GPU_STEPS])
def test_gpu_step_pod_gets_a_gpu_node(step_job, job_name, step_key):
    pod, container = _pod_of(step_job, job_name, step_key)
    assert container.image == CUDA_IMAGE
    assert resources_of(container) == as_strings(k8s.GPU_RESOURCES)
    assert resources_of(container)["limits"]["nvidia.com/gpu"] == "1"
    assert pod.node_selector == {"pricing/pool": "gpu"}
    assert [(t.key, t.operator, t.effect) for t in pod.tolerations or []] == [
        ("nvidia.com/gpu", "Exists", "NoSchedule")
    ]
    env = container_env(container)
    assert [v for n, v in env if n == "PRICING_DEVICE"] == ["cuda"], (
        env
    )  # exactly one: no `auto` from the deployment env
    assert ("DAGSTER_RUN_STEP_KEY", step_key) in env and ("PRICING_STORAGE", "s3://pricing/storage") in env
    # the deployment's secrets reach every pod the chart starts: storage credentials, alert sinks (sensors)
    assert {s.secret_ref.name for s in container.env_from if s.secret_ref} == {"pricing-s3", "pricing-alerts"}


@pytest.mark.parametrize(("job_name", "step_key"), CPU_STEPS, ids=[s for _, s in CPU_STEPS])
def test_cpu_step_pod_stays_on_cpu_nodes(step_job, job_name, step_key):
    pod, container = _pod_of(step_job, job_name, step_key)
    assert container.image == IMAGE
    assert resources_of(container) == as_strings(k8s.CPU_RESOURCES)
    assert "nvidia.com/gpu" not in resources_of(container)["limits"]
    assert pod.node_selector == {"pricing/pool": "cpu"}  # the run launcher's runK8sConfig, inherited by step pods
    assert not pod.tolerations
    assert "cuda" not in [v for n, v in container_env(container) if n == "PRICING_DEVICE"]


# --- one run per batch ----------------------------------------------------------------------------


def test_backfill_of_n_batches_is_n_runs_each_its_own_k8s_job(instance, batch_api):
    """``catalog_batch_job`` over N registered batches: the backfill daemon submits one run per
    ``catalog_batches`` partition (queued), and the run-queue daemon launches each through the
    ``K8sRunLauncher`` as its own Kubernetes Job on the CPU pool."""
    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter
    from dagster._core.storage.tags import BACKFILL_ID_TAG, PARTITION_NAME_TAG
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster._daemon.backfill import execute_backfill_iteration
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
    from dagster._time import get_current_timestamp

    batches = ["batch_2026_01", "batch_2026_02", "batch_2026_03", "batch_2026_04"]
    instance.add_dynamic_partitions(CATALOG_BATCHES, batches)
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            executable_path=sys.executable,
            module_name="infra.k8s_definitions",
            attribute="defs",
            working_directory=str(REPO),
        ),
        container_image=IMAGE,
        container_context=helm_container_context(VALUES),
        location_name=LOCATION,
    )
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget([origin])) as workspace:
        location = workspace.create_request_context().get_code_location(LOCATION)
        (repo,) = location.get_repositories().values()
        partition_set = next(ps for ps in repo.get_partition_sets() if ps.job_name == "catalog_batch_job")
        backfill = PartitionBackfill(
            backfill_id="k8s-test",
            partition_set_origin=partition_set.get_remote_origin(),
            status=BulkActionStatus.REQUESTED,
            partition_names=batches[:3],
            from_failure=False,
            reexecution_steps=None,
            tags={},
            backfill_timestamp=get_current_timestamp(),
        )
        instance.add_backfill(backfill)
        errors = [e for e in execute_backfill_iteration(workspace, logging.getLogger("test_k8s")) if e is not None]
        assert not errors, errors

        runs = instance.get_runs(RunsFilter(tags={BACKFILL_ID_TAG: "k8s-test"}))
        assert len(runs) == 3
        assert (
            sorted(r.tags[PARTITION_NAME_TAG] for r in runs) == batches[:3]
        )  # one run per batch, the 4th not selected
        assert {r.job_name for r in runs} == {"catalog_batch_job"} and {r.status for r in runs} == {
            DagsterRunStatus.QUEUED
        }

        batch_api.reset_mock()
        list(QueuedRunCoordinatorDaemon(interval_seconds=1).run_iteration(workspace))
        jobs = created_jobs(batch_api)

    assert len(jobs) == 3  # N runs -> N Kubernetes Jobs (run workers)
    by_run = {job.metadata.labels["dagster/run-id"]: job for job, _ in jobs}
    assert set(by_run) == {r.run_id for r in runs}
    for run in runs:
        job = by_run[run.run_id]
        pod = job.spec.template.spec
        assert (
            job.metadata.labels["app.kubernetes.io/component"] == "run_worker"
            and job.metadata.labels["dagster/job"] == "catalog_batch_job"
        )
        assert pod.node_selector == {"pricing/pool": "cpu"} and pod.containers[0].image == IMAGE
        assert "nvidia.com/gpu" not in (pod.containers[0].resources.limits or {})
        # the chart's container context (user deployment `resources`) wins over runK8sConfig's
        assert resources_of(pod.containers[0]) == as_strings(DEPLOYMENT["resources"])
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTING
    assert {ns for _, ns in jobs} == {NAMESPACE}


# --- CUDA image -----------------------------------------------------------------------------------


def test_cuda_dockerfile_structure():
    text = (REPO / "infra" / "Dockerfile.cuda").read_text()
    lines = [ln.strip() for ln in text.splitlines()]
    froms = [ln.split()[1] for ln in lines if ln.startswith("FROM ")]
    assert len(froms) == 1 and froms[0].startswith("nvidia/cuda:12.") and "runtime-ubuntu" in froms[0], froms
    args = dict(ln[4:].split("=", 1) for ln in lines if ln.startswith("ARG ") and "=" in ln)
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'"torch=={args["TORCH_VERSION"]}"' in pyproject  # same torch pin as the CPU image
    assert args["TORCH_INDEX"].startswith("https://download.pytorch.org/whl/cu12")
    assert "python3.11" in text and ".[k8s" in text and '"dagster-k8s==0.29.27"' in pyproject
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}, users
    assert "useradd --uid 10001" in text


def image_requirements(dockerfile: Path) -> set[str]:
    """Normalised names of every distribution a Dockerfile's ``pip`` lines leave in the image, in
    order: an install adds its requirements — ``.[extras]`` expanded through pyproject.toml (base
    dependencies plus the extras) — and their own requirements (no extras) from the metadata installed
    here, transitively (pip reinstalls a missing dependency, e.g. one uninstalled earlier); an
    uninstall removes names. The torch line (its own index) counts as ``torch``."""
    import re
    import shlex
    import tomllib
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    def closure(wanted: list[str]) -> set[str]:
        names, todo = set(), [Requirement(r) for r in wanted]
        while todo:
            req = todo.pop()
            name = canonicalize_name(req.name)
            if name in names or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
                continue
            names.add(name)
            try:
                todo += [Requirement(r) for r in metadata.requires(req.name) or [] if "extra ==" not in r]
            except metadata.PackageNotFoundError:
                pass  # not installed here (onnxruntime-gpu, dagster-aws): its own requirements are not walked
        return names

    image: set[str] = set()
    text = dockerfile.read_text().replace("\\\n", " ")
    for cmd in re.split(r"&&|\n", text):
        words = shlex.split(cmd.replace("RUN ", " ").replace("${TORCH_VERSION}", "0"))
        if words[:2] == ["pip", "uninstall"]:
            image -= {canonicalize_name(w) for w in words[2:] if not w.startswith("-")}
        elif words[:2] == ["pip", "install"]:
            wanted, args = [], iter(words[2:])
            for w in args:
                if w in ("--index-url", "-i", "--extra-index-url", "--find-links", "-f"):
                    next(args)  # the option's value
                elif w.startswith(".["):
                    wanted += project["dependencies"] + [
                        d for extra in w[2:-1].split(",") for d in project["optional-dependencies"][extra]
                    ]
                elif not w.startswith("-") and w != ".":
                    wanted.append(w)
            image |= closure(wanted)
    return image


def test_cuda_image_installs_one_onnxruntime_the_gpu_build_and_checks_its_providers():
    """The requirement set of ``infra/Dockerfile.cuda``: ``onnxruntime-gpu`` and no CPU ``onnxruntime``
    (both install the ``onnxruntime`` module: the CPU one silently took over the GPU nodes), and the
    build fails unless torch is a CUDA build and onnxruntime lists the CUDA provider."""
    cuda = image_requirements(REPO / "infra" / "Dockerfile.cuda")
    assert "onnxruntime-gpu" in cuda and "onnxruntime" not in cuda, sorted(n for n in cuda if "onnx" in n)
    assert {"torch", "dagster-k8s", "dagster-postgres", "rapidocr"} <= cuda
    text = (REPO / "infra" / "Dockerfile.cuda").read_text()
    assert "'CUDAExecutionProvider' in p" in text and "torch.version.cuda" in text and "pip uninstall" not in text
    cpu = image_requirements(REPO / "infra" / "Dockerfile")
    assert "onnxruntime" in cpu and "onnxruntime-gpu" not in cpu
