"""results/embedded_demo.py: a finished demo's markers and report as the committed record."""
import json

import pytest

import embedded_demo  # from results/ (pytest.ini's pythonpath)
from synthfactory.pipelines import runner


def _stage(workdir, name, seconds=None):
  (workdir / name).mkdir()
  if seconds is not None:
    (workdir / name / runner.MARKER).write_text(json.dumps({"seconds": seconds}))


def test_stage_seconds_in_stage_order(tmp_path):
  _stage(tmp_path, "02_diffusion", 0.0)
  _stage(tmp_path, "01_real_data", 11.2)
  (tmp_path / "notes").mkdir()  # Not a stage folder.
  assert list(embedded_demo.stage_seconds(tmp_path).items()) == [
      ("01_real_data", 11.2), ("02_diffusion", 0.0)]


def test_unfinished_demo_names_the_stage(tmp_path):
  _stage(tmp_path, "01_real_data", 11.2)
  _stage(tmp_path, "02_generate")  # Interrupted: no marker.
  with pytest.raises(SystemExit, match="unfinished: 02_generate.*make demo"):
    embedded_demo.stage_seconds(tmp_path)
  with pytest.raises(SystemExit, match="every stage"):
    embedded_demo.stage_seconds(tmp_path / "02_generate")


def test_record_takes_the_report_numbers():
  results = {
      "summary": ["line"], "comparisons": {"synthetic / real top-1": 0.97},
      "classifiers": {"real": {"top1": 0.8, "num_train": 30},
                      "synthetic": {"top1": 0.78, "num_train": 30}},
      "provenance": {"sampler": {"guidance": 1.0}, "checkpoint sha256": "abc"}}
  out = embedded_demo.record(results, {"01_a": 1.25, "02_b": 2.0}, "n", {"cpus": 2},
                             "2026-12-04")
  assert out["top1"] == {"real": 0.8, "synthetic": 0.78}
  assert out["num_train"] == {"real": 30, "synthetic": 30}
  assert out["wall_time_s"] == 3.2  # Rounded sum of the stages.
  assert out["fidelity"] is None and out["checkpoint_sha256"] == "abc"
  assert out["sampler"] == {"guidance": 1.0} and out["note"] == "n"
