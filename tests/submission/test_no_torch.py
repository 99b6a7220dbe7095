"""The runtime must import and work without torch (DESIGN.md layers)."""

import subprocess
import sys

CODE = """
import importlib, pkgutil, sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
import submission
names = [m.name for m in pkgutil.walk_packages(submission.__path__, "submission.")
         if m.name != "submission.__main__"]  # running it would start the CLI
for name in names:
    importlib.import_module(name)
assert "submission.cli" in names and "submission.evaluation" in names, names
import numpy as np
from submission.predict.ensemble import ensemble
from submission.predict.postprocess import postprocess
seg = postprocess(ensemble(np.full((2, 3, 2, 2, 2), 0.9, np.float32), "confidence"))
assert (seg == 4).all()
print("ok", len(names))
"""


def test_submission_imports_and_runs_with_torch_unimportable():
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


def test_cli_help_runs_without_torch():
    code = 'import sys; sys.modules["torch"] = None; from submission.cli import main; main()'
    result = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for command in ("synth", "validate", "evaluate", "train", "export", "predict", "package"):
        assert command in result.stdout
