"""Tests for benchmarks/layer_budget.py: its rows name the Lattice chunk scan that really ran."""

from benchmarks import layer_budget
from latticejax.rnn import lattice_memory


def test_rows_name_an_xla_fallback(monkeypatch):
    # use_kernel=None falls back to the XLA scan beyond the GPU-verified sizes (head size > 128)
    # and off GPU; the row must say so instead of reporting it as the kernel's time.
    monkeypatch.setattr(lattice_memory, "_device_count", lambda: 1)  # CI has 8 host devices
    assert layer_budget.lattice_scan_impl(True, 32, 128) == "kernel"
    assert layer_budget.lattice_scan_impl(True, 32, 64) == "kernel"
    wide = layer_budget.lattice_scan_impl(True, 32, 256)  # width 1024, 4 heads
    assert wide.startswith("xla (") and "d=256" in wide
    assert layer_budget.lattice_scan_impl(True, 32, 24).startswith("xla (")  # not a power of two
    assert layer_budget.lattice_scan_impl(False, 32, 128) == "xla (not a GPU)"
    monkeypatch.setattr(lattice_memory, "_device_count", lambda: 8)
    assert "8 devices" in layer_budget.lattice_scan_impl(True, 32, 128)
