"""Command line shared by the experiments that produce a results table from a sweep.

``python -m experiments.<name> --workdir=DIR [--variant=cpu]`` calls the module's
``run_table(variant, workdir)`` and prints the table it returns.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable


def main(run_table: Callable[[str, str], str], variants: Iterable[str]) -> None:
    """Defines ``--workdir`` and ``--variant`` (one of ``variants``, default "cpu") and runs."""
    from absl import app, flags

    flags.DEFINE_string("workdir", None, "Output directory of the table.")
    flags.DEFINE_enum("variant", "cpu", sorted(variants), "Sweep size.")

    def _main(argv):
        del argv
        if "" not in sys.path:  # configs/ and experiments/ are imported from the repository root
            sys.path.insert(0, "")
        print(run_table(flags.FLAGS.variant, flags.FLAGS.workdir))

    flags.mark_flag_as_required("workdir")
    app.run(_main)
