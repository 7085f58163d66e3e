import importlib.util, statistics, sys, time
import jax, jax.numpy as jnp
from latticejax.lattices import leech, leech_shell

def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec); sys.modules[name] = m; spec.loader.exec_module(m); return m

old = load("leech_old", "_tmp_leech_bench/leech_old.py")
old_shell = load("leech_shell_old", "_tmp_leech_bench/leech_shell_old.py")

def med(f, x, runs=5):
    jax.block_until_ready(f(x)); ts = []
    for _ in range(runs):
        t = time.perf_counter(); jax.block_until_ready(f(x)); ts.append(time.perf_counter() - t)
    return statistics.median(ts)

dev = jax.devices()[0]; print(dev.device_kind, jax.__version__, flush=True)
n = 1_000_000
x = 2.0 * jax.random.normal(jax.random.key(0), (n, 24), jnp.float32)
f = jax.jit(lambda v: old.leech_closest_point(v, chunk_size=8192)); t = med(f, x)
print(f"decoder OLD chunk 8192: {n/t:.3e} pts/s", flush=True)
ref = f(x)
for flips in (True, False):
    leech._XOR_BY_FLIPS = flips
    for ch in (8192, 32768, 131072):
        f = jax.jit(lambda v: leech.leech_closest_point(v, chunk_size=ch)); t = med(f, x)
        same = float(jnp.mean(jnp.all(f(x) == ref, axis=-1)))
        print(f"decoder NEW flips={flips} chunk {ch}: {n/t:.3e} pts/s  same-as-old {same:.6f}", flush=True)
xs = jax.random.normal(jax.random.key(1), (n, 24), jnp.float32)
book = leech_shell.leech_shell_codeword(jnp.arange(196560, dtype=jnp.int32))
hi = jax.lax.Precision.HIGHEST
def brute(xc): return jnp.argmax(jnp.dot(xc, book.T, precision=hi), axis=-1).astype(jnp.int32)
bf = jax.jit(lambda v: jax.lax.map(brute, v.reshape(-1, 4000, 24)).reshape(-1))
t_b = med(bf, xs, 3); print(f"shell brute fp32 (chunk 4000): {n/t_b:.3e} tok/s", flush=True)
f = jax.jit(lambda v: old_shell.leech_shell_nearest(v, chunk_size=8192)[0]); t = med(f, xs)
print(f"shell OLD chunk 8192: {n/t:.3e} tok/s x{t_b/t:.1f}", flush=True)
io = f(xs)
for flips in (True, False):
    leech._XOR_BY_FLIPS = flips
    for ch in (8192, 32768, 131072, 262144):
        f = jax.jit(lambda v: leech_shell.leech_shell_nearest(v, chunk_size=ch)[0]); t = med(f, xs)
        print(f"shell NEW flips={flips} chunk {ch}: {n/t:.3e} tok/s x{t_b/t:.1f} same {float(jnp.mean(f(xs) == io)):.6f}", flush=True)
