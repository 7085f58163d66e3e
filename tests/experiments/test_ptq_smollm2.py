"""experiments/ptq_smollm2.py on a tiny random GGUF file: group-scale rows, skips, block limit."""

import json

import numpy as np
import pytest

from experiments import ptq_smollm2
from tests.models.test_smollm2 import _rng, _write_tiny_gguf


def _run(tmp_path, out, methods, bits, **kwargs):
    """``ptq_smollm2.run`` on a tiny random GGUF file and text (written once per test)."""
    rng = _rng()
    if not (tmp_path / "tiny.gguf").exists():
        _write_tiny_gguf(tmp_path / "tiny.gguf", rng)
    text = "\n".join(" ".join(rng.choice(["hello", "the", "world", "12"], 6)) for _ in range(40))
    return ptq_smollm2.run(
        str(tmp_path / out),
        methods,
        bits,
        n_calib=1,
        n_eval=1,
        seq_len=16,
        gguf=str(tmp_path / "tiny.gguf"),
        text=text,
        **kwargs,
    )


def test_table_on_tiny_file(tmp_path):
    rows = _run(tmp_path, "out", ["gptq"], [3])
    assert [r["method"] for r in rows] == ["reference (Q4_1 file)", "gptq"]
    for r in rows[1:]:
        assert np.isfinite(r["ppl"]) and 0 < r["rel_error"] < 1
        assert 3 < r["bpw"] < 4  # 3-bit codes + one fp32 scale per output column
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| gptq | 3 |" in md and "14 linear layers" in md


def test_group_rows_skips_and_max_blocks(tmp_path):
    rows = _run(
        tmp_path,
        "out",
        ["rtn", "ldlq_e8_had"],
        [5],
        group_size=8,
        group_methods=("rtn",),
        max_blocks=1,
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
    rows = _run(tmp_path, "out2", ["rtn"], [2], time_limit=0.0)
    assert len(rows) == 1
    meta = json.loads((tmp_path / "out2" / "results.json").read_text())["meta"]
    assert meta["skipped"] == ["rtn 2-bit"]


def test_max_blocks_beyond_the_model_counts_its_layers(tmp_path):
    # Review fix: meta n_layers was 7 * min(max_blocks, 30) whatever the model's depth.
    rows = _run(tmp_path, "out", ["rtn"], [4], max_blocks=5)
    assert [r["method"] for r in rows[1:]] == ["rtn"]
    meta = json.loads((tmp_path / "out" / "results.json").read_text())["meta"]
    assert meta["n_layers"] == 14  # the tiny file has 2 blocks of 7 linear layers
    assert "14 linear layers" in (tmp_path / "out" / "results.md").read_text()
    with pytest.raises(ValueError, match="max_blocks must be None or >= 1, got -1"):
        _run(tmp_path, "bad", ["rtn"], [4], max_blocks=-1)
    with pytest.raises(ValueError, match=r"group_methods must be among .*'gptq_babai'"):
        _run(tmp_path, "bad", ["rtn"], [4], group_size=8, group_methods=("rtn", "gptq_babai"))
    assert not (tmp_path / "bad").exists()  # refused before any work
