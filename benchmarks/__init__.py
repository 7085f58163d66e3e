"""Speed benchmarks, each runnable as ``python -m benchmarks.<name>`` (see BENCHMARKS.md)."""
