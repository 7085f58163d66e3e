"""Shared helpers for the engine tests: a small classifier config and exact state comparison."""

import jax
import numpy as np

from configs import classifier as classifier_config
from latticejax.train import checkpoint


def tiny_config(steps=12, checkpoint_every=4, **train):
    """The classifier's tiny config shortened for tests (no periodic eval, 1 eval batch)."""
    config = classifier_config.get_config("tiny")
    config.train.steps = steps
    config.train.checkpoint_every = checkpoint_every
    config.train.eval_every = 0
    config.train.log_every = 2
    config.train.eval_batches = 1
    for k, v in train.items():
        setattr(config.train, k, v)
    return config


def flat_numpy(state):
    """``{name: numpy array}`` of every leaf of a train state."""
    return {k: np.asarray(jax.device_get(v)) for k, v in checkpoint.flatten_state(state).items()}


def assert_bit_identical(a, b):
    fa, fb = flat_numpy(a), flat_numpy(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        assert fa[k].dtype == fb[k].dtype, k
        np.testing.assert_array_equal(fa[k], fb[k], err_msg=k, strict=True)
