"""Synthetic training folders shared by the training tests (written once per session)."""

from __future__ import annotations

import pytest

from submission.workbench.synth import write_synthetic_dataset

TRAIN_SHAPE = (48, 48, 32)


@pytest.fixture(scope="session")
def synth_train(tmp_path_factory):
    """Six labelled synthetic 2021-layout cases, 48 x 48 x 32."""
    root = tmp_path_factory.mktemp("synth-train")
    write_synthetic_dataset(root, 6, layout="2021", seed=3, shape=TRAIN_SHAPE)
    return root
