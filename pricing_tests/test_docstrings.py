"""Every public module-level function, class and method of the package and the contracts has a
docstring (what it takes and returns, units and errors are the author's part; this test makes the
docstring's absence fail)."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("pricing_assets", "data_contracts")


def public_defs_without_docstring(root: Path) -> list[str]:
    """``path:line name`` of every public def/class (and public method of a public class) with no docstring."""
    out = []
    for f in sorted(root.rglob("*.py")):
        tree = ast.parse(f.read_text(), filename=str(f))
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith(
                "_"
            ):
                if not ast.get_docstring(node):
                    out.append(f"{f.relative_to(REPO)}:{node.lineno} {node.name}")
                if isinstance(node, ast.ClassDef):
                    for sub in node.body:
                        if (
                            isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef))
                            and not sub.name.startswith("_")
                            and not ast.get_docstring(sub)
                        ):
                            out.append(f"{f.relative_to(REPO)}:{sub.lineno} {node.name}.{sub.name}")
    return out


def test_every_public_definition_has_a_docstring():
    missing = [m for pkg in PACKAGES for m in public_defs_without_docstring(REPO / pkg)]
    assert not missing, "public definitions without a docstring:\n" + "\n".join(missing)


def test_the_rule_can_fail(tmp_path):
    (tmp_path / "m.py").write_text(
        'def f():\n    return 1\n\n\nclass C:\n    """doc"""\n\n    def g(self):\n        pass\n'
    )
    global REPO
    saved, REPO = REPO, tmp_path
    try:
        assert public_defs_without_docstring(tmp_path) == ["m.py:1 f", "m.py:8 C.g"]
    finally:
        REPO = saved
