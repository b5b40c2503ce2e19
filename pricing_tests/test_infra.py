"""Deployment files in ``infra/`` parse and have the structure the docs promise (no docker, helm or
kubeconform here: PyYAML + assertions, and Dagster's own config validation of the instance files)."""

import shutil
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
INFRA = REPO / "infra"


def load(name: str) -> dict:
    return yaml.safe_load((INFRA / name).read_text())


def test_instance_configs_validate_with_dagster():
    from dagster._core.instance.config import dagster_instance_config

    for name in INSTANCE_FILES:
        d = tempfile.mkdtemp()
        shutil.copy(INFRA / name, Path(d) / "dagster.yaml")
        cfg, _ = dagster_instance_config(d)
        if name != "dagster.yaml":
            pg = cfg["storage"]["postgres"]["postgres_db"]
            assert pg["scheme"] == "postgresql+psycopg2" and pg["password"] == {"env": "DAGSTER_PG_PASSWORD"}, name


INSTANCE_FILES = ("dagster.yaml", "dagster-postgres.yaml", "dagster-compose.yaml")


def test_every_instance_config_monitors_runs_and_retries_crashes_only():
    """Local, Postgres, compose and Helm: run monitoring on (a dead or stuck run is failed, a finished
    run's pool slots are freed, runs are bounded in time) and run retries that retry crashes but never
    a step failed by its data."""
    helm = load("helm/values.yaml")["dagsterDaemon"]
    configs = {name: load(name) for name in INSTANCE_FILES}
    configs["helm"] = {
        "run_monitoring": {
            k: helm["runMonitoring"][c]
            for k, c in (
                ("enabled", "enabled"),
                ("start_timeout_seconds", "startTimeoutSeconds"),
                ("max_runtime_seconds", "maxRuntimeSeconds"),
                ("free_slots_after_run_end_seconds", "freeSlotsAfterRunEndSeconds"),
                ("poll_interval_seconds", "pollIntervalSeconds"),
            )
        },
        "run_retries": {
            "enabled": helm["runRetries"]["enabled"],
            "max_retries": helm["runRetries"]["maxRetries"],
            "retry_on_asset_or_op_failure": helm["runRetries"]["retryOnAssetOrOpFailure"],
        },
    }
    for name, cfg in configs.items():
        mon, retries = cfg["run_monitoring"], cfg["run_retries"]
        assert mon["enabled"] is True, name
        assert 120 <= mon["start_timeout_seconds"] <= 600, name  # a new run worker loads torch + the code location
        assert mon["max_runtime_seconds"] >= 4 * 3600, (
            name
        )  # well above the heaviest run measured (docs/deployment.md#sizing)
        assert 0 < mon["free_slots_after_run_end_seconds"] <= 300 and mon["poll_interval_seconds"] <= 120, name
        assert retries["enabled"] is True and retries["max_retries"] >= 1, name
        assert retries["retry_on_asset_or_op_failure"] is False, name


def test_every_instance_config_evaluates_freshness_policies():
    """The freshness policies of serving_model / price_predictions are evaluated (``freshness.enabled``)
    wherever an instance config is written here; the Helm chart's generated instance keeps Dagster's
    default (on), and the code location carries the policies themselves."""
    import dagster as dg

    from pricing_assets.automation import FRESH_ASSETS
    from pricing_assets.definitions import build_defs
    from pricing_assets.settings import load_settings

    for name in INSTANCE_FILES:
        assert load(name)["freshness"] == {"enabled": True}, name
    graph = build_defs(load_settings({})).resolve_asset_graph()
    for key in FRESH_ASSETS:
        assert isinstance(graph.get(dg.AssetKey(key)).freshness_policy, dg.FreshnessPolicy), key
    assert graph.get(dg.AssetKey("products")).freshness_policy is None


def test_compose_has_every_service_and_no_public_ports():
    c = load("docker-compose.yaml")
    assert set(c["services"]) == {"postgres", "seaweedfs", "code-location", "webserver", "daemon"}
    for name, svc in c["services"].items():
        for p in svc.get("ports", []):
            assert p.startswith("127.0.0.1:"), (name, p)
    env = c["services"]["code-location"]["environment"]
    assert env["PRICING_STORAGE"].startswith("s3://") and env["PRICING_S3_ENDPOINT"] == "http://seaweedfs:8333"
    assert c["services"]["webserver"]["command"][-1] == "/opt/dagster/app/infra/workspace.yaml"
    ws = load("workspace.yaml")["load_from"][0]["grpc_server"]
    assert (ws["host"], ws["port"]) == ("code-location", 4000)
    assert "seaweedfs-s3.json" in str(c["services"]["seaweedfs"]["volumes"]) and (INFRA / "seaweedfs-s3.json").exists()


def test_dockerfile_pins_cpu_torch_and_installs_postgres_extra():
    text = (INFRA / "Dockerfile").read_text()
    pins = {ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith("ARG TORCH_VERSION=")}
    pyproject = (REPO / "pyproject.toml").read_text()
    assert pins == {"2.13.0"} and '"torch==2.13.0"' in pyproject
    assert "download.pytorch.org/whl/cpu" in text and ".[cpu,postgres]" in text
    assert "USER dagster" in text and "COPY infra/dagster-compose.yaml" in text


def test_helm_values_k8s_launcher_and_gpu_steps_match_the_code():
    from pricing_assets.definitions import build_defs
    from pricing_assets.k8s_executor import executor_config, gpu_step_keys
    from pricing_assets.settings import load_settings

    v = load("helm/values.yaml")
    assert v["runLauncher"]["type"] == "K8sRunLauncher"
    deployment = v["dagster-user-deployments"]["deployments"][0]
    # the code location as the chart's env builds it (GPU nodes: the fp32 MiniLM, fp16 on CUDA)
    helm_env = {e["name"]: e["value"] for e in deployment["env"] if "value" in e}
    assert helm_env["PRICING_EMBEDDING_MODELS"] == "minilm_l6,effnet_lite0"
    defs = build_defs(load_settings({k: v for k, v in helm_env.items() if k != "PRICING_EXECUTOR"}))
    assert deployment["codeServerArgs"] == ["-m", "pricing_assets.definitions"]
    assert {"name": "PRICING_EXECUTOR", "value": "k8s"} in deployment["env"]
    assert (
        v["postgresql"]["enabled"] is False and v["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    )
    # the gpu pool's limit is chart values (not a manual CLI step), and only there: the chart refuses
    # a run limit in both the coordinator and the concurrency block
    assert v["concurrency"]["pools"]["defaultLimit"] >= 1 and v["concurrency"]["runs"]["maxConcurrentRuns"] >= 1
    assert "maxConcurrentRuns" not in (v["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"] or {})
    # S3 credentials wherever S3 is read: compute logs (webserver), inbox (daemon), runs, code location
    for holder in (
        v["dagsterWebserver"],
        v["dagsterDaemon"],
        v["runLauncher"]["config"]["k8sRunLauncher"],
        v["dagster-user-deployments"]["deployments"][0],
    ):
        assert {"name": "pricing-s3"} in holder["envSecrets"]

    steps = gpu_step_keys(defs)
    assert {"ocr_text", "embeddings__text__minilm_l6", "embeddings__image__effnet_lite0"} <= set(steps)
    run_cfg = load("helm/run_config_gpu.yaml")["execution"]["config"]
    assert run_cfg == executor_config(defs)
    for key in steps:
        step = run_cfg["per_step_k8s_config"][key]
        assert step["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert step["pod_spec_config"]["node_selector"] == {"pricing/pool": "gpu"}
        assert step["pod_spec_config"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    cpu_steps = {"raw_catalog", "catalog_items", "product_images"}
    assert not cpu_steps & set(run_cfg["per_step_k8s_config"])


def test_every_entry_point_names_the_code_location_the_same():
    """``dg dev`` (pyproject), the root ``workspace.yaml`` (daemon, webserver), compose and Helm use one
    location name: sensor state and cursors are stored per name. No documented command loads the code
    location with ``-m`` (that names it ``pricing_assets.definitions``) where the name matters."""
    import re
    import tomllib

    from pricing_assets.settings import LOCATION_NAME

    names = {
        "pyproject.toml": tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dg"]["project"][
            "code_location_name"
        ],
        "workspace.yaml": yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"][0]["python_module"][
            "location_name"
        ],
        "infra/workspace.yaml": load("workspace.yaml")["load_from"][0]["grpc_server"]["location_name"],
        "helm": load("helm/values.yaml")["dagster-user-deployments"]["deployments"][0]["name"],
    }
    assert names == dict.fromkeys(names, LOCATION_NAME), names
    root = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"][0]["python_module"]
    assert root["module_name"] == "pricing_assets.definitions"
    # daemon / webserver / sensor commands: -w workspace.yaml, never -m (another location name)
    pattern = re.compile(
        r"(dagster-daemon run|dagster-webserver|dagster sensor \w+|dagster dev)[^\n`]*-m pricing_assets"
    )
    for path in [
        REPO / "README.md",
        REPO / "Makefile",
        *(REPO / "docs").glob("*.md"),
        *(REPO / "scripts").glob("*.py"),
        *(REPO / "pricing_assets").rglob("*.py"),
        *INFRA.rglob("*.y*ml"),
        INFRA / "Dockerfile",
    ]:
        hits = pattern.findall(path.read_text())
        assert not hits, f"{path.relative_to(REPO)}: {hits}"


def test_compose_forwards_every_setting_to_run_containers_and_lets_the_daemon_launch_them():
    """Every ``PRICING_*`` variable the code reads is set in the compose stack and forwarded by the
    Docker run launcher (a run without ``PRICING_FUSION_MLP`` would build another graph than its code
    location); the daemon, uid 10001 in the image, gets the Docker socket's group."""
    import re

    read = set()
    for path in (REPO / "pricing_assets").rglob("*.py"):
        read |= set(re.findall(r"\bPRICING_[A-Z0-9_]+\b", path.read_text()))
    read -= {"PRICING_DEBUG"}  # the `pricing` CLI's tracebacks, not a setting of the code location
    compose = load("docker-compose.yaml")
    env = compose["x-pricing-env"]
    forwarded = set(load("dagster-compose.yaml")["run_launcher"]["config"]["env_vars"])
    assert read <= set(env), sorted(read - set(env))
    assert read <= forwarded, sorted(read - forwarded)
    assert {"DAGSTER_PG_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= forwarded
    daemon = compose["services"]["daemon"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in daemon["volumes"] and daemon["group_add"]
    assert "DOCKER_GID=" in (INFRA / ".env.example").read_text()


def test_no_private_dagster_api_in_the_code_location_or_infra():
    """``pricing_assets/`` and ``infra/`` import Dagster's public API only: no ``dagster._…`` module,
    no ``dagster_shared`` (a Dagster release may move either without notice)."""
    import re

    private = re.compile(r"^\s*(?:from|import)\s+(dagster\._\S*|dagster_shared\S*)", re.MULTILINE)
    hits = {
        str(p.relative_to(REPO)): private.findall(p.read_text())
        for p in [*(REPO / "pricing_assets").rglob("*.py"), *INFRA.rglob("*.py")]
    }
    assert not {k: v for k, v in hits.items() if v}
