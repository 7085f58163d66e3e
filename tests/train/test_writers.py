"""Metric writer: JSONL records, truncation of a resumed run's future steps, loss plot."""

from latticejax.train import writers


def test_jsonl_and_resume_truncation(tmp_path):
    w = writers.MetricWriter(tmp_path)
    for step in (1, 2, 3, 4):
        w.write(step, {"train/loss": 1.0 / step})
    w.close()
    assert [r["step"] for r in writers.read_jsonl(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4]
    w = writers.MetricWriter(tmp_path, resume_step=2)
    w.write(3, {"train/loss": 0.5, "eval/loss": 0.7})
    w.close()
    records = writers.read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3]
    assert records[-1] == {"step": 3, "train/loss": 0.5, "eval/loss": 0.7}
    assert writers.plot_curves(tmp_path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
