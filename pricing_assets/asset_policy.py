"""One policy applied to every asset of the code location (``definitions.py``), so that no asset
sets it on its own: automation conditions (``automation.py``), owners, kinds, code versions,
code references and the ``dagster/column_schema`` of its pandera contract.
"""

import functools
import hashlib
import inspect
import re
import warnings
from collections.abc import Callable
from datetime import timedelta

import dagster as dg

from data_contracts import contract_for
from pricing_assets.automation import FRESH_ASSETS, FRESHNESS_FAIL_HOURS, FRESHNESS_WARN_HOURS, with_global_automation
from pricing_assets.checks import column_schema
from pricing_assets.defs.resources import IO_MANAGER_KINDS
from pricing_assets.settings import REPO_ROOT

#: Who answers for every asset (shown in the UI, used by alert routing).
OWNERS = ("team:pricing-ml",)

#: Storage kinds by IO manager format (``defs/resources.IO_MANAGER_KINDS`` maps resource keys to formats).
KINDS_BY_FORMAT = {
    "parquet": {"parquet"},
    "served_log": {"parquet"},
    "faiss": {"faiss"},
    "lightgbm": {"lightgbm"},
    "pickle": {"python"},
}
#: Kinds an asset may carry (Dagster's own limit for the ``kinds`` of an asset decorator; the UI shows
#: that many): a policy that adds more fails the code location's load, naming the asset.
MAX_KINDS = 3

#: Compute kinds: an asset whose name matches a rule runs that library (first rule that matches; the
#: embedding assets set their own from the registry).
COMPUTE_KINDS: tuple[tuple[Callable[[str], bool], set[str]], ...] = (
    (lambda n: n == "ocr_text", {"onnx"}),
    (lambda n: n.startswith("knn_"), {"faiss"}),
    (lambda n: n.startswith("lightgbm"), {"lightgbm"}),
    (lambda n: n.startswith("tfidf_"), {"sklearn"}),
    (lambda n: n.startswith("fusion_mlp"), {"pytorch"}),
    (lambda n: n in ("feature_space", "feature_matrix"), {"sklearn"}),
    (lambda n: n == "product_embeddings", {"numpy"}),
    (lambda n: n == "batch_predictions", {"lightgbm", "faiss"}),
)


def compute_kinds(name: str) -> set[str]:
    """The compute kinds of the asset ``name`` (:data:`COMPUTE_KINDS`), empty when none applies."""
    return next((set(k) for match, k in COMPUTE_KINDS if match(name)), set())


#: ``pricing_assets.lib`` modules named by an import in a source text (``from pricing_assets.lib.pkg.x
#: import …``, ``import pricing_assets.lib.pkg.x``, ``from pricing_assets.lib.pkg import x, y``).
_LIB_IMPORT = re.compile(
    r"from\s+pricing_assets\.lib\.(\w+)\s+import\s+\(?([\w\s,]+?)\)?\s*$|pricing_assets\.lib\.([\w.]+)", re.M
)
LIB_DIR = REPO_ROOT / "pricing_assets" / "lib"


@functools.cache
def lib_module_source(name: str) -> str:
    """Source text of the module ``pricing_assets.lib.<name>`` (``name`` dotted, e.g. ``models.blend``;
    "" when there is no such module file)."""
    path = LIB_DIR.joinpath(*name.split(".")).with_suffix(".py")
    return path.read_text() if path.is_file() else ""


def _lib_names(source: str) -> list[str]:
    """Dotted module names under ``pricing_assets.lib`` that ``source`` imports."""
    out = []
    for package, listed, dotted in _LIB_IMPORT.findall(source):
        if dotted:
            parts = dotted.split(".")  # a module, or a module followed by an attribute
            out += [".".join(parts[:i]) for i in range(len(parts), 0, -1) if lib_module_source(".".join(parts[:i]))][:1]
        else:
            out += [f"{package}.{n.strip()}" for n in listed.split(",") if n.strip()]
    return out


def lib_modules_of(source: str) -> list[str]:
    """Every ``pricing_assets.lib`` module ``source`` imports, and those they import, transitively
    (sorted dotted names such as ``models.blend``; read as text, nothing is imported)."""
    seen: set[str] = set()
    todo = [source]
    while todo:
        for name in _lib_names(todo.pop()):
            if name not in seen and lib_module_source(name):
                seen.add(name)
                todo.append(lib_module_source(name))
    return sorted(seen)


def code_version_of(assets_def: dg.AssetsDefinition) -> str | None:
    """First 12 hex digits of the SHA-1 of the asset's compute function source and of every
    ``pricing_assets.lib`` module it runs (its imports, transitively: :func:`lib_modules_of`), so the
    asset shows as changed in the UI when its ``lib/`` code changes, not only when its thin body does."""
    fn = getattr(getattr(assets_def.op, "compute_fn", None), "decorated_fn", None)
    if fn is None:
        return None
    source = inspect.getsource(fn)
    digest = hashlib.sha1(source.encode())
    for name in lib_modules_of(source):
        digest.update(f"\0{name}\0".encode() + lib_module_source(name).encode())
    return digest.hexdigest()[:12]


def freshness_policy() -> dg.FreshnessPolicy:
    """The freshness policy of :data:`~pricing_assets.automation.FRESH_ASSETS`: WARN after
    ``FRESHNESS_WARN_HOURS`` without a materialization, FAIL after ``FRESHNESS_FAIL_HOURS``."""
    return dg.FreshnessPolicy.time_window(
        fail_window=timedelta(hours=FRESHNESS_FAIL_HOURS), warn_window=timedelta(hours=FRESHNESS_WARN_HOURS)
    )


def _policy_for(assets_def: dg.AssetsDefinition) -> Callable[[dg.AssetSpec], dg.AssetSpec]:
    version = code_version_of(assets_def) if assets_def.is_executable else None

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        name = spec.key.to_user_string()
        io_format = IO_MANAGER_KINDS.get(assets_def.get_io_manager_key_for_asset_key(spec.key))
        kinds = KINDS_BY_FORMAT.get(io_format, set()) | compute_kinds(name)
        metadata = {}
        schema = contract_for(name, spec.group_name)
        if schema is not None and "dagster/column_schema" not in spec.metadata:
            metadata["dagster/column_schema"] = column_schema(schema)
        if len(kinds | set(spec.kinds)) > MAX_KINDS:
            raise ValueError(
                f"{name}: kinds {sorted(kinds | set(spec.kinds))} are more than {MAX_KINDS}; trim COMPUTE_KINDS / KINDS_BY_FORMAT"
            )
        spec = spec.merge_attributes(
            owners=[o for o in OWNERS if o not in spec.owners], kinds=kinds - set(spec.kinds), metadata=metadata
        )
        if name in FRESH_ASSETS:
            spec = dg.apply_freshness_policy(spec, freshness_policy())
        return spec.replace_attributes(code_version=spec.code_version or version)

    return apply


def apply_asset_policy(defs: dg.Definitions, git_url: str | None = None, git_branch: str = "main") -> dg.Definitions:
    """``defs`` with every asset's automation condition (``with_global_automation``), owners, kinds,
    code version, ``dagster/column_schema`` and code references set; everything else of ``defs``
    (checks, jobs, resources, the ``dg`` component tree) is kept as it is.

    Args:
        defs: the loaded definitions.
        git_url: repository URL the code references link to (``settings.git_url``,
            ``PRICING_GIT_URL``); None: they point at the local files.
        git_branch: the branch of ``git_url`` (``settings.git_branch``, ``PRICING_GIT_BRANCH``).
    """
    assets = [
        a.map_asset_specs(_policy_for(a)) if isinstance(a, dg.AssetsDefinition) else a
        for a in with_global_automation(defs.assets or [])
    ]
    with warnings.catch_warnings():  # code references are beta in Dagster 1.13; the warning says nothing to a user
        warnings.simplefilter("ignore", dg.BetaWarning)
        assets = dg.with_source_code_references(assets)
    if git_url:
        assets = dg.link_code_references_to_git(
            assets,
            git_url=git_url,
            git_branch=git_branch,
            file_path_mapping=dg.AnchorBasedFilePathMapping(
                local_file_anchor=REPO_ROOT, file_anchor_path_in_repository=""
            ),
        )
    specs = {spec.key: spec for a in assets for spec in getattr(a, "specs", [])}
    with warnings.catch_warnings():  # Definitions.map_asset_specs is a preview API in Dagster 1.13
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return defs.map_asset_specs(func=lambda spec: specs[spec.key])
