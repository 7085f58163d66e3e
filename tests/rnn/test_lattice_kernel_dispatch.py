"""Dispatch between the fused Lattice chunk kernel (pallas_kernels.lattice_chunk) and the XLA chunk
scan in latticejax.rnn.lattice_memory (arXiv 2504.05646): which one runs, the errors when the
kernel cannot apply, and equal outputs/gradients (kernel in the Pallas interpreter vs XLA)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from latticejax.rnn import LatticeMemory, lattice_chunked
from latticejax.rnn import lattice_memory as lm
from pallas_kernels import lattice_chunk


def _inputs(seed, b=2, t=40, h=2, m=16, d=16):
    ks = jax.random.split(jax.random.key(seed), 6)
    unit = lambda x: x / jnp.linalg.norm(x, axis=-1, keepdims=True)
    q = unit(jax.random.normal(ks[0], (b, t, h, m)))
    k = unit(jax.random.normal(ks[1], (b, t, h, m)))
    v = unit(jax.random.normal(ks[2], (b, t, h, d)))
    eta = 0.5 * jax.nn.sigmoid(jax.random.normal(ks[3], (b, t, h)))
    la = -0.1 * jax.nn.softplus(jax.random.normal(ks[4], (b, t, h)))
    h0 = unit(jax.random.normal(ks[5], (b, h, m, d)))
    return q, k, v, eta, la, h0


@pytest.fixture(autouse=True)
def _off_gpu_semantics(monkeypatch):
    """These tests pin the behaviour off a GPU (the XLA default, the kernel file's pure-JAX
    reference for interpret=None) and float32 matmuls, so that they mean the same on a GPU
    machine, where the compiled kernel and tf32 dots would otherwise run. The compiled kernel's
    GPU check is ``python -m pallas_kernels.lattice_chunk_bench --sections=check``."""
    monkeypatch.setattr(lm, "_on_gpu", lambda: False)
    monkeypatch.setattr(lattice_chunk._dispatch, "on_gpu", lambda: False)
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture
def spy(monkeypatch):
    """Records calls of the kernel entry point (then runs it as usual)."""
    calls = []
    real = lattice_chunk.lattice_chunk_scan

    def wrapped(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(lattice_chunk, "lattice_chunk_scan", wrapped)
    return calls


def _trace(*args, **kwargs):
    """Traces lattice_chunked (the dispatch is decided while tracing; nothing is compiled)."""
    return jax.eval_shape(lambda *a: lattice_chunked(*a, **kwargs), *args)


def test_dispatch_decisions(spy, monkeypatch):
    q, k, v, eta, la, h0 = _inputs(0, t=20)
    kw = dict(chunk_size=16)
    # On the CPU the default is the XLA chunk scan.
    _trace(q, k, v, eta, None, h0, **kw)
    assert spy == []
    # Pretend to be on a GPU: the default takes the kernel where it applies (interpret=None passed
    # through, which off a real GPU runs the kernel file's pure-JAX reference).
    monkeypatch.setattr(lm, "_on_gpu", lambda: True)
    monkeypatch.setattr(lm, "_device_count", lambda: 1)  # CI has 8 host devices
    _trace(q, k, v, eta, None, h0, **kw)
    assert len(spy) == 1 and spy[0]["interpret"] is None and spy[0]["chunk_size"] == 16
    # ... and XLA where it does not: decay, refinement, sizes that are not powers of two >= 16.
    _trace(q, k, v, eta, la, h0, normalize=False, **kw)
    _trace(q, k, v, eta, None, h0, n_refine=1, **kw)
    _trace(q, k, v, eta, None, h0, chunk_size=8)
    _trace(q[..., :8], k[..., :8], v, eta, None, h0[..., :8, :], **kw)
    _trace(q, k, v, eta, None, h0, use_kernel=False, **kw)
    assert len(spy) == 1
    _trace(q, k, v, eta, None, h0, use_kernel=True, interpret=True, **kw)
    assert len(spy) == 2 and spy[1]["interpret"] is True


def test_use_kernel_true_errors_name_the_reason():
    q, k, v, eta, la, h0 = _inputs(1, t=8)
    with pytest.raises(ValueError, match="decay"):
        lattice_chunked(q, k, v, eta, la, h0, normalize=False, chunk_size=16, use_kernel=True)
    with pytest.raises(ValueError, match="n_refine=2"):
        lattice_chunked(q, k, v, eta, None, h0, chunk_size=16, n_refine=2, use_kernel=True)
    with pytest.raises(ValueError, match="chunk_size=24"):
        lattice_chunked(q, k, v, eta, None, h0, chunk_size=24, use_kernel=True)
    with pytest.raises(ValueError, match="m=8"):
        lattice_chunked(q[..., :8], k[..., :8], v, eta, None, h0[..., :8, :], use_kernel=True)
    rngs = nnx.Rngs(0)
    kw = dict(num_heads=2, num_slots=16, chunk_size=16)
    # The layer checks at construction.
    with pytest.raises(ValueError, match="decay"):
        LatticeMemory(32, normalize=False, decay=True, use_kernel=True, rngs=rngs, **kw)
    with pytest.raises(ValueError, match="n_refine=1"):
        LatticeMemory(32, n_refine=1, use_kernel=True, rngs=rngs, **kw)
    with pytest.raises(ValueError, match="d=8"):
        LatticeMemory(32, num_heads=4, num_slots=16, chunk_size=16, use_kernel=True, rngs=rngs)
    with pytest.raises(ValueError, match="mode='exact'"):
        LatticeMemory(32, num_heads=2, num_slots=16, mode="exact", use_kernel=True, rngs=rngs)


def test_no_decay_equals_zero_decay_on_xla_path():
    """The no-decay XLA path (g = 0 built per chunk) equals passing log_alpha = 0."""
    q, k, v, eta, _, h0 = _inputs(2, t=20, m=4, d=3)
    kw = dict(chunk_size=8, normalize=False, use_kernel=False)
    o1, h1 = lattice_chunked(q, k, v, eta, None, h0, **kw)
    o2, h2 = lattice_chunked(q, k, v, eta, jnp.zeros_like(eta), h0, **kw)
    np.testing.assert_allclose(o1, o2, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(h1, h2, rtol=1e-6, atol=1e-6)


def _grads(layer, x):
    graphdef, params = nnx.split(layer, nnx.Param)

    @jax.jit
    def run(params):
        def loss(p):
            y = nnx.merge(graphdef, p)(x)
            return jnp.sum(jnp.sin(3.0 * y)), y

        return jax.value_and_grad(loss, has_aux=True)(params)

    (_, y), g = run(params)
    return y, g


def test_layer_kernel_equals_xla_outputs_and_parameter_gradients(spy):
    x = jax.random.normal(jax.random.key(3), (2, 40, 32))
    kw = dict(num_heads=2, num_slots=16, chunk_size=16)
    y0, g0 = _grads(LatticeMemory(32, use_kernel=False, rngs=nnx.Rngs(4), **kw), x)
    assert spy == []
    y1, g1 = _grads(LatticeMemory(32, use_kernel=True, interpret=True, rngs=nnx.Rngs(4), **kw), x)
    # the layer really ran the kernel (in the interpreter), not XLA twice
    assert len(spy) == 1 and spy[0]["interpret"] is True
    np.testing.assert_allclose(y1, y0, rtol=1e-4, atol=1e-4)
    flat0, flat1 = jax.tree.leaves(g0), jax.tree.leaves(g1)
    assert len(flat0) == len(flat1) > 0
    for a, b in zip(flat0, flat1):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)


def test_kernel_equals_xla_softmax_readout_without_projection(spy):
    """Other switches through the function: softmax read-out, raw slots, delta-rule write."""
    q, k, v, eta, _, h0 = _inputs(5, t=40)
    kw = dict(chunk_size=16, readout="softmax", normalize=False, project=False)

    def run(use_kernel):
        def loss(q, k, v, eta, h0):
            interpret = True if use_kernel else None
            o, h_t = lattice_chunked(
                q, k, v, eta, None, h0, use_kernel=use_kernel, interpret=interpret, **kw
            )
            return jnp.sum(jnp.sin(3.0 * o)) + jnp.sum(h_t**2), o

        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3, 4), has_aux=True))(
            q, k, v, eta, h0
        )

    (_, o0), g0 = run(False)
    assert spy == []
    (_, o1), g1 = run(True)
    assert len(spy) == 1 and spy[0]["interpret"] is True
    np.testing.assert_allclose(o1, o0, rtol=1e-4, atol=1e-4)
    for a, b in zip(g0, g1):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)


def test_dtype_reaches_the_kernel_as_its_dot_dtype(spy, monkeypatch):
    """dtype=bfloat16 runs the kernel with bf16 dot operands (never a silent float32 kernel
    run); a dtype its dots do not take keeps XLA (None) or is an error naming dtype (True)."""
    q, k, v, eta, _, h0 = _inputs(6, t=20)
    monkeypatch.setattr(lm, "_on_gpu", lambda: True)
    monkeypatch.setattr(lm, "_device_count", lambda: 1)  # CI has 8 host devices
    for dtype in (jnp.bfloat16, jnp.float32):
        _trace(q, k, v, eta, None, h0, chunk_size=16, dtype=dtype)
        assert jnp.dtype(spy.pop()["dot_dtype"]) == dtype
    _trace(q, k, v, eta, None, h0, chunk_size=16, dtype=jnp.float16)
    assert spy == []
    with pytest.raises(ValueError, match="dtype=float16"):
        _trace(q, k, v, eta, None, h0, chunk_size=16, dtype=jnp.float16, use_kernel=True)
    with pytest.raises(ValueError, match="dtype=float16"):
        LatticeMemory(
            32, num_heads=2, num_slots=16, chunk_size=16, dtype=jnp.float16, use_kernel=True,
            rngs=nnx.Rngs(0),
        )  # fmt: skip


def test_bf16_kernel_matches_the_bf16_xla_scan():
    """The kernel's bf16 dots (interpreter) against the XLA scan with bf16 operands and float32:
    both bf16 forms sit at bf16 rounding distance from float32 and from each other."""
    q, k, v, eta, _, h0 = _inputs(8, t=40)
    kw = dict(chunk_size=16)
    o32, _ = lattice_chunked(q, k, v, eta, None, h0, use_kernel=False, **kw)
    o_x, _ = lattice_chunked(q, k, v, eta, None, h0, use_kernel=False, dtype=jnp.bfloat16, **kw)
    o_k, _ = lattice_chunked(
        q, k, v, eta, None, h0, use_kernel=True, interpret=True, dtype=jnp.bfloat16, **kw
    )
    scale = float(jnp.max(jnp.abs(o32)))
    for o in (o_x, o_k):
        err = float(jnp.max(jnp.abs(o - o32))) / scale
        assert 1e-5 < err < 3e-2
    assert float(jnp.max(jnp.abs(o_k - o_x))) / scale < 3e-2


def test_interpret_without_the_kernel_is_an_error(spy):
    """interpret=True asks for the kernel in the interpreter: where XLA would run instead (on
    CPU with use_kernel=None, or use_kernel=False) it is an error, not a silent XLA run."""
    q, k, v, eta, _, h0 = _inputs(7, t=20)
    for use_kernel in (None, False):
        with pytest.raises(ValueError, match="interpret=True"):
            _trace(q, k, v, eta, None, h0, chunk_size=16, use_kernel=use_kernel, interpret=True)
    assert spy == []
    kw = dict(num_heads=2, num_slots=16, chunk_size=16, interpret=True, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="interpret=True"):
        LatticeMemory(32, use_kernel=False, **kw)
    with pytest.raises(ValueError, match="interpret=True"):
        LatticeMemory(32, mode="exact", **kw)


def test_config_use_kernel_reaches_the_layer():
    """configs/mqar.py model.use_kernel -> experiments.mqar.make_model -> LatticeMemory."""
    from configs.mqar import get_config
    from experiments import mqar

    def layers(config):
        model = mqar.make_model(config, nnx.Rngs(0))
        return [m for _, m in nnx.iter_graph(model) if isinstance(m, LatticeMemory)]

    config = get_config("tiny")
    assert all(layer.use_kernel is None for layer in layers(config))
    config.model.use_kernel = True
    found = layers(config)
    assert found and all(layer.use_kernel is True for layer in found)
    config.model.num_slots = 8  # not a power of two >= 16: an error naming the layer argument
    with pytest.raises(ValueError, match="num_slots = 8"):
        layers(config)


@pytest.mark.parametrize("normalize, project", [(True, True), (True, False), (False, True)])
def test_kernel_path_equals_xla_for_every_switch(normalize, project):
    """The kernel path (its pure-JAX reference off GPU, interpret=None) equals the XLA chunk scan
    in outputs and final memory for the switches the other tests leave out, both read-outs, a
    ragged T and a chunk longer than T."""
    q, k, v, eta, _, h0 = _inputs(8, t=37, d=32)
    for readout, chunk_size in (("linear", 16), ("softmax", 16), ("linear", 64)):
        kw = dict(chunk_size=chunk_size, normalize=normalize, project=project, readout=readout)
        o0, h_0 = lattice_chunked(q, k, v, eta, None, h0, use_kernel=False, **kw)
        o1, h_1 = lattice_chunked(q, k, v, eta, None, h0, use_kernel=True, **kw)
        np.testing.assert_allclose(o1, o0, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(h_1, h_0, rtol=1e-4, atol=1e-5)


def test_default_keeps_xla_on_several_devices_and_unverified_sizes(spy, monkeypatch):
    """use_kernel=None takes the kernel only on one device (XLA does not partition the Pallas
    call: a data-parallel mesh would run the whole batch on every device) and at the sizes it was
    verified at on a GPU; use_kernel=True still runs it."""
    q, k, v, eta, _, h0 = _inputs(7, t=20)
    monkeypatch.setattr(lm, "_on_gpu", lambda: True)
    monkeypatch.setattr(lm, "_device_count", lambda: 2)
    _trace(q, k, v, eta, None, h0, chunk_size=16)
    assert spy == []
    assert "2 devices" in lm.auto_kernel_reason(16, 16, 16)
    _trace(q, k, v, eta, None, h0, chunk_size=16, use_kernel=True)
    assert len(spy) == 1
    monkeypatch.setattr(lm, "_device_count", lambda: 1)
    _trace(q, k, v, eta, None, h0, chunk_size=128)  # above the verified chunk size
    assert len(spy) == 1
    assert "chunk_size <= 64" in lm.auto_kernel_reason(128, 16, 16)
    assert lm.auto_kernel_reason(64, 128, 128) == ""
    _trace(q, k, v, eta, None, h0, chunk_size=16)
    assert len(spy) == 2
