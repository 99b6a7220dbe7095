"""The layers of DESIGN.md: the predict path (and the case I/O it reads with) imports
nothing from the workbench, the evaluation package or the command; nothing in
``submission/`` imports ``train/`` or ``export/``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import submission

PACKAGE = Path(submission.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` statement of ``path`` names."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def offending(folder: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        bad = sorted(
            n
            for n in imported_modules(path)
            if any(n == f or n.startswith(f + ".") for f in forbidden)
        )
        if bad:
            found[str(path.relative_to(PACKAGE))] = bad
    return found


@pytest.mark.parametrize("folder", ["predict", "io"])
def test_predict_path_imports_no_workbench_evaluation_or_cli(folder):
    forbidden = ("submission.workbench", "submission.evaluation", "submission.cli")
    assert offending(folder, forbidden) == {}


def test_no_runtime_module_imports_train_or_export():
    assert offending(".", ("train", "export")) == {}


def test_the_checker_sees_a_forbidden_import(tmp_path, monkeypatch):
    (tmp_path / "predict").mkdir()
    (tmp_path / "predict" / "x.py").write_text(
        "from submission.workbench.tuning import score_candidates\nimport numpy\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path)
    assert offending("predict", ("submission.workbench",)) == {
        "predict/x.py": [
            "submission.workbench.tuning",
            "submission.workbench.tuning.score_candidates",
        ]
    }


def test_predict_path_runs_with_workbench_and_evaluation_unimportable():
    code = (
        "import sys, importlib, pkgutil\n"
        "for name in ('submission.workbench', 'submission.evaluation', 'torch'):\n"
        "    sys.modules[name] = None\n"
        "import submission.predict, submission.io\n"
        "for pkg in (submission.predict, submission.io):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
