"""Command line and result files shared by the experiments that produce a results table.

``python -m experiments.<name> --workdir=DIR [--variant=cpu]`` calls the module's
``run_table(variant, workdir)`` and prints the table it returns. ``write_results`` writes a
``results.json`` / ``results.md`` pair (the PTQ tables).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

# Columns every PTQ table shares: (header, row key, format spec), see ``write_results``.
PTQ_HEAD = [("method", "method", ""), ("code bits", "bits", "")]
PTQ_TAIL = [
    ("layer rel. error", "rel_error", ".4f"),
    ("bits/weight", "bpw", ".3f"),
    ("time to quantize (s)", "seconds", ".1f"),
]


def write_results(
    workdir: Path,
    payload,
    intro: str,
    columns: Sequence[tuple[str, str, str]],
    rows: Sequence[dict],
) -> None:
    """Writes ``payload`` to ``results.json`` and ``intro`` + a markdown table to ``results.md``.

    ``columns`` are ``(header, row key, format spec)``, e.g. ``("perplexity", "ppl", ".2f")``.
    """
    workdir = Path(workdir)
    (workdir / "results.json").write_text(json.dumps(payload, indent=1))
    lines = [intro, "", "| " + " | ".join(c[0] for c in columns) + " |"]
    lines.append("|" + "---|" * len(columns))
    for r in rows:
        lines.append("| " + " | ".join(format(r[key], spec) for _, key, spec in columns) + " |")
    (workdir / "results.md").write_text("\n".join(lines) + "\n")


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
