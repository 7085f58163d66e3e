"""experiments/ptq_smollm2.py on a tiny random GGUF file: group-scale rows, skips, block limit."""

import json

import numpy as np

from experiments import ptq_smollm2
from tests.models.test_smollm2 import _rng, _write_tiny_gguf


def test_group_rows_skips_and_max_blocks(tmp_path):
    rng = _rng()
    _write_tiny_gguf(tmp_path / "tiny.gguf", rng)
    text = "\n".join(" ".join(rng.choice(["hello", "the", "world", "12"], 6)) for _ in range(40))
    rows = ptq_smollm2.run(
        str(tmp_path / "out"),
        ["rtn", "ldlq_e8_had"],
        [5],
        n_calib=1,
        n_eval=1,
        seq_len=16,
        group_size=8,
        group_methods=("rtn",),
        max_blocks=1,
        gguf=str(tmp_path / "tiny.gguf"),
        text=text,
    )
    names = [(r["method"], r["bits"]) for r in rows[1:]]
    # ldlq_e8_had exists at 2/3/4 bits only: skipped at 5.
    assert names == [("rtn", 5), ("rtn g8", 5)]
    assert rows[2]["bpw"] == 5 + 16 / 8  # one float16 per 8 input rows
    for r in rows[1:]:
        assert np.isfinite(r["ppl"]) and 0 < r["rel_error"] < 1
    meta = json.loads((tmp_path / "out" / "results.json").read_text())["meta"]
    assert meta["n_layers"] == 7 and meta["group_size"] == 8 and meta["skipped"] == []
    # A zero time limit skips everything after the reference row, and says so.
    rows = ptq_smollm2.run(
        str(tmp_path / "out2"),
        ["rtn"],
        [2],
        n_calib=1,
        n_eval=1,
        seq_len=16,
        time_limit=0.0,
        gguf=str(tmp_path / "tiny.gguf"),
        text=text,
    )
    assert len(rows) == 1
    meta = json.loads((tmp_path / "out2" / "results.json").read_text())["meta"]
    assert meta["skipped"] == ["rtn 2-bit"]
