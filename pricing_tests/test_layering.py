"""One place for each fact, kept by the import graph (read as source, nothing is imported):
``data_contracts/`` imports nothing of ``pricing_assets``; ``pricing_assets/lib/`` imports neither
Dagster nor the code location; the package's environment variables are read in ``settings.py`` only;
``cli.py`` queries the instance through ``instance_state.py`` only, and ``status.py`` /
``instance_state.py`` never import ``cli.py``."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PKG = REPO / "pricing_assets"
#: Environment variables of other libraries that modules outside ``settings.py`` may read (thread
#: count, Hugging Face offline mode, PaddleX model folder): none is a setting of this package.
FOREIGN_ENV = {"OMP_NUM_THREADS", "HF_HUB_OFFLINE", "PADDLE_PDX_CACHE_HOME"}


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (``import a.b`` -> ``a.b``; ``from a.b import c`` -> ``a.b``, ``a.b.c``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    return out


def environment_reads(path: Path) -> list[str]:
    """``line: name`` of every read of ``os.environ`` / ``os.getenv`` in ``path`` (``?`` when the
    name is not a string literal); writes (``os.environ[k] = v``, ``setdefault``) are not reads."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.environ.get", "os.getenv") and node.args:
            key = node.args[0]
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and ast.unparse(node.value) == "os.environ"
        ):
            key = node.slice
        else:
            continue
        out.append(f"{node.lineno}: {key.value if isinstance(key, ast.Constant) else '?'}")
    return out


def test_data_contracts_import_nothing_of_the_code_location():
    hits = {
        p.name: sorted(m for m in imported_modules(p) if m.startswith("pricing_assets"))
        for p in (REPO / "data_contracts").rglob("*.py")
    }
    assert not {k: v for k, v in hits.items() if v}


def test_lib_imports_neither_dagster_nor_the_code_location():
    hits = {}
    for p in (PKG / "lib").rglob("*.py"):
        bad = sorted(
            m
            for m in imported_modules(p)
            if m.split(".")[0] in ("dagster", "dagster_shared")
            or (m.startswith("pricing_assets") and not m.startswith("pricing_assets.lib"))
        )
        if bad:
            hits[p.name] = bad
    assert not hits


def test_package_environment_variables_are_read_in_settings_only():
    hits = {}
    for p in PKG.rglob("*.py"):
        if p.name == "settings.py" and p.parent == PKG:
            continue
        reads = [r for r in environment_reads(p) if r.split(": ", 1)[1] not in FOREIGN_ENV]
        if reads:
            hits[str(p.relative_to(REPO))] = reads
    assert not hits, f"read these in pricing_assets/settings.py and pass the value in: {hits}"


def test_the_cli_queries_the_instance_through_instance_state_only():
    """No attribute of the instance is used in ``cli.py``: it passes the instance on (to
    ``instance_state`` functions, ``dg.materialize``, ``load_asset_value``) and prints."""
    tree = ast.parse((PKG / "cli.py").read_text())
    uses = sorted(
        {
            f"{n.lineno}: {ast.unparse(n)}"
            for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and ast.unparse(n.value) in ("instance", "self.instance")
        }
    )
    assert not uses


@pytest.mark.parametrize("module", ["status.py", "instance_state.py"])
def test_no_module_the_cli_uses_imports_the_cli(module):
    assert not {m for m in imported_modules(PKG / module) if m.startswith("pricing_assets.cli")}


def test_the_rules_can_fail(tmp_path):
    """The readers find what the rules forbid (the tests above are not vacuous)."""
    src = tmp_path / "m.py"
    src.write_text(
        "import os\nfrom pricing_assets.lib import x\nos.environ.get('PRICING_X')\nos.environ['DAGSTER_HOME']\n"
        "os.getenv(name)\nos.environ['A'] = '1'\nos.environ.setdefault('B', '1')\n"
    )
    assert {"pricing_assets.lib", "pricing_assets.lib.x", "os"} <= imported_modules(src)
    assert environment_reads(src) == ["3: PRICING_X", "4: DAGSTER_HOME", "5: ?"]
