"""The layers of docs/architecture.md hold: import-linter checks the contracts of
pyproject.toml (as .ci/run does), so the normal suite fails on an import that breaks
them; and the modules documented as knowing nothing of Django import none of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = ("import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, "
        "no_logo=True))")


def test_the_import_contracts_are_kept():
    # A child process run from the repository root, as `lint-imports` in CI: the code
    # checked is this checkout's (the root comes first on its path).
    done = subprocess.run([sys.executable, "-c", LINT], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    # The same graph import-linter reads (function-level imports included), with the
    # third-party packages as nodes.
    return grimp.build_graph("coffre", include_external_packages=True, cache_dir=None)


def _imported_by(graph: grimp.ImportGraph, package: str) -> set[str]:
    modules = {package} | graph.find_descendants(package)
    return {imported for module in modules
            for imported in graph.find_modules_directly_imported_by(module)
            if imported not in sys.stdlib_module_names} - modules


@pytest.mark.parametrize(("package", "allowed"), [
    ("coffre.vault", {"cryptography", "pyrage", "coffre.files"}),  # the crypto core
    ("coffre.leakcheck.scan", {"ahocorasick"}),    # finds clear values in files
])
def test_the_crypto_core_and_the_file_scanner_import_no_django(graph, package, allowed):
    assert _imported_by(graph, package) <= allowed
