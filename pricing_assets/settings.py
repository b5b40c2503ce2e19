"""Environment-driven settings of the code location (read once at load; no secrets here).

| variable | default | meaning |
|---|---|---|
| ``DAGSTER_HOME`` | ``./.dagster_home`` | Dagster instance (run history, schedules) |
| ``PRICING_STORAGE`` | ``$DAGSTER_HOME/storage`` | base path of batches, images, caches and assets; local or ``s3://bucket/prefix`` |
| ``PRICING_S3_ENDPOINT`` | unset | endpoint of an S3-compatible store (credentials: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``) |
| ``PRICING_DEVICE`` | ``auto`` | ``auto`` (CUDA when present) / ``cpu`` / ``cuda`` |
| ``PRICING_IMAGE_MIRROR`` | ``data/sample/images`` | local folder of photos named by the link's basename, consulted first |
| ``PRICING_IMAGES_OFFLINE`` | ``0`` | ``1``: never download photos (rows not in mirror/store are ``missing``) |
| ``PRICING_OCR_BACKEND`` | ``rapidocr`` | ``rapidocr`` / ``paddleocr`` |
| ``PRICING_EMBEDDING_MODELS`` | unset | comma-separated registry entries to compute instead of the ``enabled`` flags of ``embedding_models.toml``, e.g. ``minilm_l6,effnet_lite0`` on GPU nodes (docs/deployment.md, "Text encoder per deployment") |
| ``PRICING_MODEL_CACHE`` | ``~/.cache/pricing_assets`` | local folder for models exported at run time (EfficientNet ONNX) |
| ``PRICING_INBOX`` | ``$DAGSTER_HOME/inbox`` | folder or ``s3://`` prefix watched by the new-catalog sensor |
| ``PRICING_GATE_TOLERANCE`` | ``1.0`` | model gate: OOF SMAPE points a retrain may lose against the promoted model and still be promoted |
| ``PRICING_FUSION_MLP`` | ``0`` | ``1``: train the fusion MLP (``fusion_mlp_model``/``_predictions``) and blend it; opt-in, see docs/experiments.md |
| ``PRICING_AUTOMATION`` | ``0`` | ``1``: inbox sensor, automation sensor and nightly schedule start *running* by default |
| ``PRICING_EXECUTOR`` | ``in_process`` | ``in_process`` (one process per run) / ``k8s`` (every step its own pod, GPU steps on GPU nodes: ``pricing_assets/k8s_executor.py``) |
| ``PRICING_GPU_IMAGE`` | unset | with ``k8s``: the CUDA image of the GPU step pods (``infra/Dockerfile.cuda``) |
| ``PRICING_GIT_URL`` | unset | repository URL: the assets' code references link there instead of to the local files |
| ``PRICING_GIT_BRANCH`` | ``main`` | with ``PRICING_GIT_URL``: the branch the code references name |
| ``PRICING_ALERT_WEBHOOK`` | unset | URL that every alert (failed run, failed ERROR check, freshness FAIL) is POSTed to as JSON with a Slack-compatible ``text`` |
| ``PRICING_SLACK_TOKEN`` | unset | with ``PRICING_SLACK_CHANNEL``: a Slack bot token; alerts are also posted there (``dagster-slack``) |
| ``PRICING_SLACK_CHANNEL`` | unset | the Slack channel of the alerts, e.g. ``#pricing-alerts`` |
| ``PRICING_UI_URL`` | ``http://127.0.0.1:3000`` | base URL of the Dagster UI that alerts link runs to (unset: ``lib.runtime.alerts.DEFAULT_UI_URL``) |

``PRICING_DEBUG`` (``1``: the ``pricing`` CLI shows tracebacks, :func:`cli_debug`) is the CLI's own,
not a setting of the code location. Every variable above is read here and nowhere else:
``pricing_assets/lib/`` takes these values as arguments.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from pricing_assets.lib.embeddings.registry import parse_model_list
from pricing_assets.lib.models.model_gate import DEFAULT_TOLERANCE_SMAPE

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The code location's one name: ``[tool.dg.project] code_location_name`` (``dg dev``), the root
#: ``workspace.yaml`` (daemon, webserver), compose and Helm. Sensor state and cursors are stored per
#: location name, so every entry point uses this one (``pricing_tests/test_infra.py`` checks them).
LOCATION_NAME = "pricing-assets"
SAMPLE_DIR = REPO_ROOT / "data" / "sample"
#: The Dagster instance folder when ``DAGSTER_HOME`` is unset (relative to the working directory).
DEFAULT_HOME = ".dagster_home"
#: Values of a yes/no variable that mean yes (case-insensitive).
TRUE_VALUES = ("1", "true", "yes")


@dataclass(frozen=True)
class Settings:
    """The code location's settings (see the module docstring for the variable behind each field)."""

    home: str
    storage: str
    s3_endpoint: str | None
    device: str
    image_mirror: str | None
    images_offline: bool
    ocr_backend: str
    inbox: str
    model_cache: str = ""
    automation_on: bool = False
    gate_tolerance_smape: float = DEFAULT_TOLERANCE_SMAPE
    fusion_mlp: bool = False
    executor: str = "in_process"
    gpu_image: str | None = None
    git_url: str | None = None
    git_branch: str = "main"
    alert_webhook: str | None = None
    slack_token: str | None = field(default=None, repr=False)
    slack_channel: str | None = None
    ui_url: str | None = None
    embedding_models: tuple[str, ...] | None = None

    @property
    def opt_in_price_models(self) -> tuple[str, ...]:
        """Names of the opt-in models of the price-model registry (``lib.models.registry``) switched on
        here: ``fusion_mlp`` with ``PRICING_FUSION_MLP=1``."""
        return ("fusion_mlp",) if self.fusion_mlp else ()


#: ``PRICING_EXECUTOR`` values.
EXECUTORS = ("in_process", "k8s")


def _flag(env, name: str) -> bool:
    """``env[name]`` read as yes/no (:data:`TRUE_VALUES`; unset is no)."""
    return env.get(name, "0").lower() in TRUE_VALUES


def default_home(env: dict | None = None) -> str:
    """The Dagster instance folder: ``$DAGSTER_HOME``, else :data:`DEFAULT_HOME` (absolute path).

    Args:
        env: the environment to read (default ``os.environ``).
    """
    env = os.environ if env is None else env
    return os.path.abspath(env.get("DAGSTER_HOME") or DEFAULT_HOME)


def model_cache_dir(env: dict | None = None) -> str:
    """The local folder for models exported at run time (EfficientNet ONNX): ``$PRICING_MODEL_CACHE``,
    else ``$XDG_CACHE_HOME/pricing_assets``, else ``~/.cache/pricing_assets`` (absolute path; the
    ``pricing_assets/lib/`` functions take it as an argument: ``lib.embeddings.encoders.load_encoder(cache_dir=)``).

    Args:
        env: the environment to read (default ``os.environ``).
    """
    env = os.environ if env is None else env
    base = env.get("PRICING_MODEL_CACHE") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "pricing_assets")
    return os.path.abspath(os.path.expanduser(base))


def cli_debug(env: dict | None = None) -> bool:
    """True when ``PRICING_DEBUG`` asks the ``pricing`` CLI for full tracebacks (``1``/``true``/``yes``).

    Args:
        env: the environment to read (default ``os.environ``).
    """
    return _flag(os.environ if env is None else env, "PRICING_DEBUG")


def load_settings(env: dict | None = None) -> Settings:
    """Settings from ``env`` (default ``os.environ``), see the module docstring for the variables.

    Raises:
        ValueError: ``PRICING_EXECUTOR`` is not one of :data:`EXECUTORS`.
    """
    env = os.environ if env is None else env
    executor = env.get("PRICING_EXECUTOR") or "in_process"
    if executor not in EXECUTORS:
        raise ValueError(f"PRICING_EXECUTOR={executor!r}: expected one of {EXECUTORS}")
    home = default_home(env)
    mirror = env.get("PRICING_IMAGE_MIRROR", str(SAMPLE_DIR / "images"))
    return Settings(
        home=home,
        storage=env.get("PRICING_STORAGE") or os.path.join(home, "storage"),
        s3_endpoint=env.get("PRICING_S3_ENDPOINT") or None,
        device=env.get("PRICING_DEVICE", "auto"),
        image_mirror=mirror or None,
        images_offline=_flag(env, "PRICING_IMAGES_OFFLINE"),
        ocr_backend=env.get("PRICING_OCR_BACKEND", "rapidocr"),
        inbox=env.get("PRICING_INBOX") or os.path.join(home, "inbox"),
        model_cache=model_cache_dir(env),
        automation_on=_flag(env, "PRICING_AUTOMATION"),
        gate_tolerance_smape=float(env.get("PRICING_GATE_TOLERANCE") or DEFAULT_TOLERANCE_SMAPE),
        fusion_mlp=_flag(env, "PRICING_FUSION_MLP"),
        executor=executor,
        gpu_image=env.get("PRICING_GPU_IMAGE") or None,
        git_url=env.get("PRICING_GIT_URL") or None,
        git_branch=env.get("PRICING_GIT_BRANCH") or "main",
        alert_webhook=env.get("PRICING_ALERT_WEBHOOK") or None,
        slack_token=env.get("PRICING_SLACK_TOKEN") or None,
        slack_channel=env.get("PRICING_SLACK_CHANNEL") or None,
        ui_url=env.get("PRICING_UI_URL") or None,
        embedding_models=parse_model_list(env.get("PRICING_EMBEDDING_MODELS")),
    )


#: Settings and embedding registry that :func:`current_settings` / :func:`current_registry` return
#: instead of the environment's while :func:`overrides` is active (tests, benchmarks, the CLI).
_SETTINGS: ContextVar["Settings | None"] = ContextVar("pricing_settings", default=None)
_REGISTRY: ContextVar["dict | None"] = ContextVar("pricing_registry", default=None)


def current_settings() -> Settings:
    """The settings the ``defs/`` modules build with: an :func:`overrides` value, else the environment's."""
    return _SETTINGS.get() or load_settings()


def current_registry() -> dict:
    """The embedding registry the ``defs/`` modules build with: an :func:`overrides` value, else
    ``pricing_assets/embedding_models.toml`` (``{name: EmbeddingModelSpec}``) with the entries of
    ``PRICING_EMBEDDING_MODELS`` enabled instead of its own flags when that is set.

    Raises:
        RegistryError: ``PRICING_EMBEDDING_MODELS`` names an unknown entry or no text model.
    """
    from pricing_assets.lib.embeddings.registry import load_registry, select_models

    registry = _REGISTRY.get()
    return registry if registry is not None else select_models(load_registry(), current_settings().embedding_models)


@contextmanager
def overrides(settings: Settings | None = None, registry: dict | None = None) -> Iterator[None]:
    """Within the block, :func:`current_settings` / :func:`current_registry` return these values
    (``None`` keeps the default). Used by ``pricing_assets.definitions.build_defs``."""
    tokens = (_SETTINGS.set(settings), _REGISTRY.set(registry))
    try:
        yield
    finally:
        _SETTINGS.reset(tokens[0])
        _REGISTRY.reset(tokens[1])
