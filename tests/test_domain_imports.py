"""Every domain module imports on its own in a fresh interpreter (no import-order traps), and the
pure core imports nothing of the durable shell."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(".".join(p.relative_to(ROOT / "domain").with_suffix("").parts).removesuffix(".__init__")
                 for p in (ROOT / "domain").rglob("*.py") if p.name != "__init__.py" or p.parent != ROOT / "domain")
CYCLE = {"policy"}  # reported: policy imports models, whose last line imports policy.Policy


def test_each_domain_module_imports_first_in_a_fresh_interpreter() -> None:
    procs = {m: subprocess.Popen([sys.executable, "-c", f"import domain.{m}"], cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for m in MODULES if m not in CYCLE}
    failed = {}
    for m, p in procs.items():
        out, err = p.communicate(timeout=60)
        if p.returncode != 0:
            failed[m] = err.strip().splitlines()[-1:]
    assert failed == {}


@pytest.mark.parametrize("module", sorted(CYCLE))
def test_policy_imports_first(module: str) -> None:
    p = subprocess.run([sys.executable, "-c", f"import domain.{module}"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr.strip().splitlines()[-1:]


def test_domain_imports_nothing_of_the_shell() -> None:
    forbidden = ("temporalio", "activities", "workflows", "worker", "portal", "cli", "runtime")
    for path in (ROOT / "domain").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
