"""The docs say what the code is: asset names in docs/assets.md exist, its contract list is the code's,
and every relative link or repository path in the README and ``docs/`` points to a file that exists.

The code location is read through :func:`load_code_location` only, so a change in how
``pricing_assets.definitions`` builds ``defs`` is adapted in one place.
"""

import fnmatch
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
#: The document and section that list the assets (an ASCII graph and a table).
ASSETS_DOC = REPO / "docs" / "assets.md"
ASSET_SECTION = "## The asset graph"
#: The sentence of that section that lists the assets without a ``contract`` check.
NO_CONTRACT_LEAD = "Assets without a `contract` check"
CONTRACT_CHECK = "contract"
#: Documents whose links and repository paths must resolve (README first).
DOCS = [
    README,
    *(
        REPO / "docs" / name
        for name in ("ARCHITECTURE.md", "experiments.md", "assets.md", "operations.md", "results.md", "deployment.md")
    ),
]
#: Top-level folders of this repository: a backticked path starting with one of them must exist.
REPO_DIRS = (
    "pricing_assets/",
    "pricing_tests/",
    "data_contracts/",
    "docs/",
    "infra/",
    "benchmarks/",
    "scripts/",
    "data/",
)


@dataclass(frozen=True)
class CodeLocation:
    """What the docs are checked against: asset keys (``to_user_string``), the check names of each
    asset, and the names of the partitions definitions the assets use."""

    assets: frozenset[str]
    checks: dict[str, frozenset[str]]
    partition_sets: frozenset[str]

    @property
    def check_names(self) -> frozenset[str]:
        return frozenset(name for names in self.checks.values() for name in names)


@lru_cache(maxsize=1)
def load_code_location() -> CodeLocation:
    """The asset graph of the code location with every opt-in model on (``PRICING_FUSION_MLP=1``: the
    README documents the opt-in assets too).

    The one place that knows how ``defs`` is obtained; adapt it here if ``definitions.py`` changes.
    """
    from dataclasses import replace

    from pricing_assets.definitions import build_defs
    from pricing_assets.settings import load_settings

    graph = build_defs(replace(load_settings(), fusion_mlp=True)).resolve_asset_graph()
    assets = frozenset(k.to_user_string() for k in graph.get_all_asset_keys())
    checks: dict[str, frozenset[str]] = {}
    partition_sets = set()
    for node in graph.asset_nodes:
        key = node.key.to_user_string()
        checks[key] = frozenset(c.name for c in node.check_keys)
        name = getattr(node.partitions_def, "name", None)
        if name:
            partition_sets.add(name)
    return CodeLocation(assets=assets, checks=checks, partition_sets=frozenset(partition_sets))


def section(text: str, heading: str) -> str:
    """The body of the ``## `` section titled ``heading`` (up to the next ``## `` heading)."""
    start = text.find(heading + "\n")
    assert start >= 0, f"README has no section {heading!r}"
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end >= 0 else len(text)]


def _fenced_blocks(text: str) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)


def _without_fenced_blocks(text: str) -> str:
    return re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)


def _backticked(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", text)


#: An asset key as the README writes it: ``name``, ``a/b/c``, or a pattern with ``*`` or ``<placeholder>``.
ASSET_TOKEN = re.compile(r"^[a-z*<][a-z0-9_*<>]*(?:/[a-z0-9_*<>]+)*$")


def readme_asset_names(text: str, loc: CodeLocation) -> set[str]:
    """Every asset name the README's asset section lists.

    Rule: in the ASCII graph, every word with ``_`` or ``/`` in it (a Dagster key); in the table,
    every backticked word of the *asset* column. Names of partitions definitions and of checks that
    the graph mentions (``catalog_batches``, ``model_gate``) are not assets and are left out.
    """
    body = section(text, ASSET_SECTION)
    names: set[str] = set()
    for block in _fenced_blocks(body):
        for word in re.findall(r"[A-Za-z0-9_*<>/]+", block):
            word = word.strip("/")
            if ("_" in word or "/" in word) and ASSET_TOKEN.match(word):
                names.add(word)
    for line in _without_fenced_blocks(body).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else []
        if len(cells) >= 2:
            names.update(t for t in _backticked(cells[1]) if ASSET_TOKEN.match(t))
    return names - loc.partition_sets - loc.check_names


def _matches(name: str, assets: frozenset[str]) -> bool:
    """``name`` is an asset key, or a pattern (``*_model``, ``embeddings/<modality>/<model>``) that at
    least one asset key matches."""
    if "*" not in name and "<" not in name:
        return name in assets
    pattern = re.sub(r"<[^>/]+>", "*", name)
    return any(fnmatch.fnmatchcase(a, pattern) and a.count("/") == pattern.count("/") for a in assets)


def relative_links(text: str) -> list[str]:
    """Targets of the markdown links and images of ``text`` that are relative paths (no URL scheme,
    no pure ``#anchor``), without their ``#anchor``."""
    targets = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)
    return [t.split("#", 1)[0] for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def repository_paths(text: str) -> list[str]:
    """Backticked repository paths outside code blocks (``pricing_assets/automation.py``,
    ``data_contracts/``): those that start with a top-level folder of this repository and hold no
    placeholder, glob or spaces."""
    out = []
    for token in _backticked(_without_fenced_blocks(text)):
        if token.startswith(REPO_DIRS) and not re.search(r"[\s<>*{}$]", token):
            out.append(token.split(":", 1)[0])
    return out


# --- the README's assets ----------------------------------------------------------------------


def test_readme_asset_section_is_found():
    """The rule below reads a real section: at least the ingest, model and serving assets."""
    names = readme_asset_names(ASSETS_DOC.read_text(), load_code_location())
    assert {"raw_catalog", "products", "price_blend", "serving_model", "price_predictions"} <= names, sorted(names)


def test_every_asset_the_readme_lists_exists():
    loc = load_code_location()
    names = readme_asset_names(ASSETS_DOC.read_text(), loc)
    missing = sorted(n for n in names if not _matches(n, loc.assets))
    assert not missing, (
        f"docs/assets.md ({ASSET_SECTION!r}) names assets that the code location does not define: {missing}; assets defined: {sorted(loc.assets)}"
    )


def test_readme_lists_the_assets_without_a_contract():
    """The README's list of assets without a blocking ``contract`` check is exactly the code's."""
    loc = load_code_location()
    body = section(ASSETS_DOC.read_text(), ASSET_SECTION)
    para = next((p for p in body.split("\n\n") if p.strip().startswith(NO_CONTRACT_LEAD)), None)
    assert para is not None, f"docs/assets.md {ASSET_SECTION!r} has no paragraph starting {NO_CONTRACT_LEAD!r}"
    said = {t for t in _backticked(para[len(NO_CONTRACT_LEAD) :]) if ASSET_TOKEN.match(t)} - {CONTRACT_CHECK}
    actual = {a for a in loc.assets if CONTRACT_CHECK not in loc.checks.get(a, frozenset())}
    assert said == actual, (
        f"README says these have no contract but they do (or do not exist): {sorted(said - actual)}; "
        f"these have no contract and the README does not say so: {sorted(actual - said)}"
    )


# --- links and paths ------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_to_existing_files(doc):
    assert doc.exists(), f"{doc.relative_to(REPO)} is missing"
    links = relative_links(doc.read_text())
    broken = sorted({t for t in links if t and not (doc.parent / t).exists()})
    assert not broken, f"{doc.relative_to(REPO)} links to files that do not exist: {broken}"


def test_readme_links_the_guides():
    links = {str((README.parent / t).resolve().relative_to(REPO)) for t in relative_links(README.read_text()) if t}
    assert {
        "docs/deployment.md",
        "docs/experiments.md",
        "docs/ARCHITECTURE.md",
        "docs/assets.md",
        "docs/operations.md",
        "docs/results.md",
    } <= links, sorted(links)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_backticked_repository_paths_exist(doc):
    paths = repository_paths(doc.read_text())
    missing = sorted({p for p in paths if not (REPO / p).exists()})
    assert not missing, f"{doc.relative_to(REPO)} names repository paths that do not exist: {missing}"


#: Where a name that ``docs/ARCHITECTURE.md`` mentions must occur.
CODE_GLOBS = ("pricing_assets/**/*.py", "data_contracts/**/*.py", "pricing_assets/*.toml", "pyproject.toml")
#: A backticked Python name: ``Name``, ``module.name``, ``function(args)``.
PY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?:\(.*\))?$")


def architecture_names(text: str) -> list[str]:
    """The backticked Python names (classes, functions, constants, modules) of ``text`` outside code
    blocks, each reduced to its last dotted part without call arguments; file names are left out
    (the path test covers those)."""
    out = []
    for token in _backticked(_without_fenced_blocks(text)):
        if PY_NAME.match(token) and not re.search(r"\.(py|toml|md|yaml|png)$", token):
            out.append(re.sub(r"\(.*\)$", "", token).split(".")[-1])
    return out


def test_architecture_names_exist_in_the_code():
    """Every class, function, constant or asset name ``docs/ARCHITECTURE.md`` mentions occurs in the code."""
    code = "\n".join(p.read_text() for g in CODE_GLOBS for p in REPO.glob(g))
    names = architecture_names((REPO / "docs" / "ARCHITECTURE.md").read_text())
    assert len(names) > 50, f"too few names found, is the rule still reading the document? {names}"
    missing = sorted({n for n in set(names) if not re.search(rf"\b{re.escape(n)}\b", code)})
    assert not missing, f"docs/ARCHITECTURE.md names what the code does not have: {missing}"


def test_the_rules_can_fail():
    """The extraction finds a wrong name, a broken link and a missing path (the tests above are not vacuous)."""
    loc = load_code_location()
    text = f"{ASSET_SECTION}\n\n```\nraw_catalog ──► no_such_asset\n```\n\n| group | asset | what |\n|---|---|---|\n| x | `tfidf_ridge` | y |\n"
    names = readme_asset_names(text, loc)
    assert {n for n in names if not _matches(n, loc.assets)} == {"no_such_asset", "tfidf_ridge"}
    assert _matches("embeddings/<modality>/<model>", loc.assets) and not _matches("embeddings/<model>", loc.assets)
    assert relative_links("see [x](docs/nope.md#a) and [y](https://example.org)") == ["docs/nope.md"]
    assert repository_paths("`pricing_assets/assets/` and `<storage>/x` and `docs/*.md`") == ["pricing_assets/assets/"]
    assert architecture_names("`lib.serving.scoring.ServingModel`, `build_defs(settings)`, `cli.py`, `a b`") == [
        "ServingModel",
        "build_defs",
    ]
