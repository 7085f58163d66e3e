import numpy as np

from latticejax.lattices import golay


def test_weight_distribution():
    assert golay.weight_distribution() == {0: 1, 8: 759, 12: 2576, 16: 759, 24: 1}
    w = golay.codewords().sum(1)
    assert sorted(np.unique(w).tolist()) == [0, 8, 12, 16, 24]


def test_linear_code_and_index(rng):
    c = golay.codewords()
    assert c.shape == (4096, 24) and c.dtype == np.uint8
    np.testing.assert_array_equal(golay.codeword_index(c), np.arange(4096))
    i, j = rng.integers(0, 4096, size=(2, 500))
    s = c[i] ^ c[j]  # sums of codewords are codewords: their index must re-encode them
    np.testing.assert_array_equal(c[golay.codeword_index(s)], s)
    g = golay.generator_matrix()
    np.testing.assert_array_equal(g[:, :12], np.eye(12, dtype=np.uint8))
    # Self-dual: every pair of generator rows is orthogonal over GF(2).
    np.testing.assert_array_equal((g.astype(int) @ g.T.astype(int)) % 2, 0)


def test_octads_form_steiner_system(rng):
    o = golay.octads()
    assert o.shape == (759, 24) and np.all(o.sum(1) == 8)
    # S(5, 8, 24): any 5 points lie in exactly one octad.
    for _ in range(20):
        pts = rng.choice(24, size=5, replace=False)
        assert int(np.sum(o[:, pts].sum(1) == 5)) == 1
