"""Dependencies point inward: the domain imports no framework and no sample data; webhook/ and flows/ never import each
other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(package: str) -> set[tuple[str, str]]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {(str(path.relative_to(ROOT)), alias.name.split(".")[0]) for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add((str(path.relative_to(ROOT)), node.module.split(".")[0]))
    return found


def test_domain_imports_no_framework():
    bad = {(f, m) for f, m in _imports("domain") if m in {"flask", "prefect", "httpx", "requests", "webhook", "flows"}}
    assert bad == set()


def test_domain_does_not_import_sample_data():
    """The demo data generators (sample_data/) build on the domain, never the other way round."""
    assert {(f, m) for f, m in _imports("domain") if m == "sample_data"} == set()


def test_webhook_and_flows_do_not_import_each_other():
    assert {(f, m) for f, m in _imports("webhook") if m == "flows"} == set()
    assert {(f, m) for f, m in _imports("flows") if m == "webhook"} == set()
