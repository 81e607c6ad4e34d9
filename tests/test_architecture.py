"""The house as its imports draw it: docs/architecture.md's picture is current, and no import draws
an arrow the house forbids (domain -> anything of ours; activities -> workflows; workflows ->
portal/cli; anything -> worker but the entry points; runtime -> anything but domain; the product
-> demo). The picture and the rules are tools/import_graph.py's."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
assert _spec is not None and _spec.loader is not None
graph = importlib.util.module_from_spec(_spec)
sys.modules["import_graph"] = graph  # dataclasses look their module up there
_spec.loader.exec_module(graph)

Import = graph.Import


@pytest.fixture(scope="module")
def imports() -> list:
    return graph.all_imports()


def test_no_import_draws_a_forbidden_arrow(imports):
    assert graph.violations(imports) == []


def test_the_picture_in_docs_architecture_is_current(imports):
    doc = graph.DOC.read_text(encoding="utf-8")
    assert graph.doc_with_picture(doc, graph.picture(imports)) == doc, (
        "docs/architecture.md's import picture is out of date: run python tools/import_graph.py --write "
        "and check the new arrows belong there"
    )


def test_late_relative_and_package_imports_are_all_seen(imports):
    seen = {(i.source, i.target) for i in imports}
    assert ("cli.main", "demo.run") in seen  # inside a function: an arrow all the same
    assert ("runtime.client", "runtime.config") in seen  # from .config import ...
    assert ("demo.run", "cli.intake") in seen or ("demo.run", "cli") in seen  # from cli import intake
    assert ("worker.__main__", "worker.main") in seen
    assert ("workflows.activities", "activities.email") in seen


@pytest.mark.parametrize(("source", "target"), [
    ("domain.money", "runtime.config"),
    ("domain.book", "workflows.collection"),
    ("activities.email", "workflows.collection"),
    ("workflows.collection", "portal.app"),
    ("workflows.collection", "cli.commands"),
    ("cli.main", "worker.main"),
    ("portal.app", "worker.wiring"),
    ("demo.run", "worker.main"),
    ("runtime.client", "portal.app"),
    ("workflows.collection", "demo.run"),
    ("activities.email", "demo.smtp_sink"),
    ("portal.app", "demo.borrower_portal"),
    ("worker.wiring", "demo.run"),
    ("runtime.telemetry", "demo"),
])
def test_each_forbidden_arrow_is_caught_naming_module_and_line(source, target):
    found = graph.violations([Import(source, target, 7)])
    assert len(found) == 1 and source in found[0] and "line 7" in found[0] and target in found[0]


@pytest.mark.parametrize(("source", "target"), [
    ("worker.__main__", "worker.main"),  # an entry point
    ("cli.main", "demo.run"),  # the CLI offers the demo when it is installed
    ("demo.run", "cli.intake"),
    ("demo.run", "portal.auth"),
    ("workflows.activities", "activities.email"),
    ("workflows.collection", "runtime.telemetry"),
    ("portal.app", "runtime.client"),
])
def test_allowed_arrows_pass(source, target):
    assert graph.violations([Import(source, target, 1)]) == []
