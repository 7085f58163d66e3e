"""Acquire datasets ahead of time: ``python -m latticejax.data.fetch fashion_mnist [mnist ...]``.

Each name is loaded through its sources (see :mod:`latticejax.data.sources`); files that had to
be fetched land in the cache (``$LATTICEJAX_CACHE_DIR`` or ``~/.cache/latticejax``). Prints where
each dataset was found and its split shapes; exits non-zero naming what was tried on failure.
"""

from __future__ import annotations

import argparse
import sys

from latticejax.data.registry import dataset_names, load_dataset
from latticejax.data.sources import DatasetNotFoundError


def fetch(names: list[str], data_dir: str | None = None) -> dict[str, str]:
    """Loads each dataset once (fetching into the cache if needed); returns ``{name: source}``."""
    found = {}
    for name in names:
        ds = load_dataset(name, data_dir=data_dir)
        found[name] = str(ds.info.get("source", ""))
        shapes = {split: {k: (v.shape, str(v.dtype)) for k, v in arrays.items()}
              for split, arrays in (("train", ds.train), ("test", ds.test))}  # fmt: skip
        print(f"{name}: {found[name]} {shapes}", flush=True)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m latticejax.data.fetch", description=__doc__)
    parser.add_argument("names", nargs="+", choices=dataset_names(), metavar="NAME",
                      help=f"datasets to fetch: {', '.join(dataset_names())}")  # fmt: skip
    parser.add_argument("--data_dir", default=None, help="directory searched first")
    args = parser.parse_args(argv)
    try:
        fetch(args.names, args.data_dir)
    except DatasetNotFoundError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
