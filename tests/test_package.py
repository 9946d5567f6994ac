"""The package as pip sees it: a LICENSE, a citation, the `orderstudy` command, every import declared."""

import ast
import contextlib
import importlib
import importlib.metadata
import io
import re
import sys
import tomllib

import pytest
import yaml

from orderstudy.core import paths

PYPROJECT = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _normalize(re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0))


def _declared() -> set[str]:
    project = PYPROJECT["project"]
    names = {_requirement_name(r) for r in project["dependencies"]}
    for extra in project.get("optional-dependencies", {}).values():
        names |= {_requirement_name(r) for r in extra}
    return names


def _third_party_imports() -> dict[str, str]:
    """Return each top-level module imported anywhere under lib/ (also inside functions) and one file importing it."""
    found = {}
    for path in sorted((paths.ROOT / "lib").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "orderstudy":
                    found.setdefault(top, str(path.relative_to(paths.ROOT)))
    return found


def test_the_console_script_is_orderstudy_cli_main_and_prints_its_help():
    assert PYPROJECT["project"]["scripts"] == {"orderstudy": "orderstudy.cli:main"}
    module, _, attr = PYPROJECT["project"]["scripts"]["orderstudy"].partition(":")
    main = getattr(importlib.import_module(module), attr)
    assert callable(main)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert out.getvalue().startswith("usage: orderstudy ")
    for command in ("run", "check", "plan", "estimate", "summary"):
        assert command in out.getvalue()


def test_every_third_party_module_imported_under_lib_is_a_declared_dependency():
    imports = _third_party_imports()
    # A sanity floor: the scan sees the imports it must (a broken scan would pass vacuously).
    assert {"torch", "transformers", "yaml", "nbconvert", "vllm"} <= set(imports)
    distributions = importlib.metadata.packages_distributions()
    declared = _declared()
    missing = []
    for module, where in sorted(imports.items()):
        # An uninstalled module (vllm lives in its own environment) must be declared under its own name.
        provided_by = {_normalize(d) for d in distributions.get(module, [module])}
        if not provided_by & declared:
            missing.append(f"{module} ({where}; distribution {sorted(provided_by)})")
    assert not missing, f"imported under lib/ but not declared in pyproject.toml: {missing}"


def test_the_notebooks_needs_are_declared_though_never_imported():
    # papermill runs the notebooks on the ipykernel kernel, and the report exports them with nbconvert.
    assert {"ipykernel", "nbconvert"} <= {_requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}


def test_the_license_is_apache_2_0_in_full_and_matches_pyproject():
    text = (paths.ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n")
    assert "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    # the nine sections of the terms, each present
    for n, title in enumerate(["Definitions", "Grant of Copyright License", "Grant of Patent License", "Redistribution",
                               "Submission of Contributions", "Trademarks", "Disclaimer of Warranty",
                               "Limitation of Liability", "Accepting Warranty or Additional Liability"], start=1):
        assert f"{n}. {title}." in text, title
    assert PYPROJECT["project"]["license"] == "Apache-2.0" and PYPROJECT["project"]["license-files"] == ["LICENSE"]


def test_citation_cff_names_the_package_its_version_and_its_license():
    citation = yaml.safe_load((paths.ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    assert citation["version"] == PYPROJECT["project"]["version"]
    assert citation["license"] == "Apache-2.0"
    assert "orderstudy" in citation["title"] and citation["authors"] and citation["message"]
