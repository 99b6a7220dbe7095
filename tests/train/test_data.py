"""Training patches: a member's own channels, and paper 003's centred crop."""

from __future__ import annotations

import dataclasses

import numpy as np

from submission.predict.preprocess import Preprocessing
from submission.predict.tumour_window import extract_window
from train.augment import AugmentConfig
from train.cache import build_cache, training_cases
from train.data import PatchDataset
from train.recipe_files import load_config

NO_AUGMENT = AugmentConfig(flip_p=0.0, intensity_p=0.0, affine_p=0.0)


def test_a_member_gets_its_channels_of_the_centred_window(synth_train, tmp_path):
    cases = training_cases(synth_train)[:2]
    cached = list(build_cache(cases, tmp_path, Preprocessing(divisor=8), progress=False).values())
    cfg = load_config("effunet")
    t2f = dataclasses.replace(cfg.members[3], crop=(16, 64, 12))  # 003 section 2.5: centred
    dataset = PatchDataset(cached, t2f, NO_AUGMENT, seed=0, channels=cfg.channel_index(t2f))
    image, target = dataset[1]
    full = np.asarray(cached[1].image(), dtype=np.float32)
    shape = np.asarray(full.shape[1:])
    start = tuple(int(s) for s in -((np.asarray(t2f.crop) - shape) // 2))
    assert image.shape == (1, 16, 64, 12) and target.shape == (3, 16, 64, 12)
    np.testing.assert_array_equal(image.numpy(), extract_window(full, start, t2f.crop)[[3]])
    dataset.set_epoch(5)  # the centred window does not move between epochs
    np.testing.assert_array_equal(dataset[1][0].numpy(), image.numpy())
    everything = PatchDataset(cached, t2f, NO_AUGMENT, seed=0)
    assert everything[1][0].shape == (4, 16, 64, 12)  # no channels: all of the run's
