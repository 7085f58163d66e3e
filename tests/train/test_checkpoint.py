"""Checkpointer: exact round trip (incl. PRNG keys), keep-last-N, digest verification."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from latticejax.train import checkpoint


def _state(seed):
    rng = np.random.default_rng(seed)
    return {
        "w": jnp.asarray(rng.standard_normal((5, 3)), jnp.float32),
        "layers": [jnp.asarray(rng.integers(0, 9, (4,)), jnp.int32), jnp.asarray(seed, jnp.uint32)],
        "key": jax.random.key(seed),
    }


def _equal(a, b):
    fa, fb = checkpoint.flatten_state(a), checkpoint.flatten_state(b)
    assert fa.keys() == fb.keys()
    return all(np.array_equal(np.asarray(fa[k]), np.asarray(fb[k])) for k in fa)


def test_round_trip_keep_last_and_meta(tmp_path):
    ckpt = checkpoint.Checkpointer(tmp_path, keep=2)
    for step in (1, 2, 3):
        ckpt.save(step, _state(step), {"data": {"epoch": step, "position": 0, "seed": 0}})
    assert ckpt.all_steps() == [2, 3]
    state, meta = ckpt.restore_latest(_state(0))
    assert _equal(state, _state(3)) and meta["step"] == 3 and meta["data"]["epoch"] == 3
    assert jax.dtypes.issubdtype(state["key"].dtype, jax.dtypes.prng_key)
    ckpt.close()


def test_digest_mismatch_is_skipped_with_warning(tmp_path):
    ckpt = checkpoint.Checkpointer(tmp_path, keep=3)
    ckpt.save(1, _state(1), {})
    ckpt.save(2, _state(2), {})
    meta_file = next((tmp_path / "checkpoints" / "2" / "meta").glob("metadata"))
    meta = json.loads(meta_file.read_text())
    meta["digest"] = "0" * 64
    meta_file.write_text(json.dumps(meta))
    with pytest.warns(RuntimeWarning, match="step 2.*digest"):
        state, meta = ckpt.restore_latest(_state(0))
    assert meta["step"] == 1 and _equal(state, _state(1))
    assert (tmp_path / "corrupt_checkpoints" / "2").is_dir()
    assert ckpt.all_steps() == [1]
    ckpt.close()


def test_no_checkpoint_and_bad_keep(tmp_path):
    assert checkpoint.Checkpointer(tmp_path, keep=1).restore_latest(_state(0)) is None
    with pytest.raises(ValueError, match="keep_checkpoints must be >= 1, got 0"):
        checkpoint.Checkpointer(tmp_path, keep=0)


def test_digest_detects_one_flipped_bit():
    flat = checkpoint.flatten_state(_state(4))
    bad = dict(flat)
    w = np.asarray(flat["w"]).copy()
    w.view(np.uint32)[2, 1] ^= 1
    bad["w"] = w
    assert checkpoint.digest(flat) != checkpoint.digest(bad)
    assert checkpoint.digest(flat) == checkpoint.digest(checkpoint.flatten_state(_state(4)))
