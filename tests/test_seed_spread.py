"""results/seed_spread.py: mixes, the per-seed summary, and its record file."""
import json

import ml_collections
import pytest

import seed_spread  # from results/ (pytest.ini's pythonpath)


def test_mix_names_round_trip():
  base = ml_collections.ConfigDict(
      {"seed": 0, "data": {"mix": "concat", "synthetic_fraction": 0.0}})
  assert seed_spread.mix_name(base.data) == "concat"
  ratio = seed_spread.with_mix(base, "ratio:0.25")
  assert (ratio.data.mix, ratio.data.synthetic_fraction) == ("ratio", 0.25)
  assert seed_spread.mix_name(ratio.data) == "ratio:0.25"
  assert base.data.mix == "concat"  # Not changed in place.
  for bad in ("ratio", "concat:0.5", "union"):
    with pytest.raises(SystemExit, match="give concat or ratio:f"):
      seed_spread.with_mix(base, bad)


def test_summary_differences_only_for_seeds_both_ran():
  summary = seed_spread.summarise({"real": {0: 0.92, 1: 0.93},
                                   "real+synthetic": {1: 0.935, 2: 0.94}})
  assert summary["real+synthetic_minus_real_points_by_seed"] == {"1": 0.5}
  assert summary["real"]["mean"] == pytest.approx(0.925)
  assert summary["real"]["stdev"] > 0


def test_save_replaces_only_the_same_workdir_mix_and_recipe(tmp_path, monkeypatch):
  monkeypatch.setattr(seed_spread, "OUTPUT", tmp_path / "seed_spread.json")
  record = lambda w, m, v, recipe="20 epochs": {
      "workdir": w, "real+synthetic_mix": m, "classifier_training": recipe, "value": v}
  seed_spread.save(record("a", "concat", 1))
  seed_spread.save(record("a", "ratio:0.25", 2))
  seed_spread.save(record("b", "concat", 3))
  seed_spread.save(record("a", "concat", 5, recipe="60 epochs"))
  seed_spread.save(record("a", "concat", 4))
  records = json.loads((tmp_path / "seed_spread.json").read_text())["records"]
  assert sorted((r["workdir"], r["real+synthetic_mix"], r["classifier_training"],
                 r["value"]) for r in records) == [
                     ("a", "concat", "20 epochs", 4),
                     ("a", "concat", "60 epochs", 5),
                     ("a", "ratio:0.25", "20 epochs", 2),
                     ("b", "concat", "20 epochs", 3)]


def test_same_mix_spelled_otherwise_is_the_same_mix():
  base = ml_collections.ConfigDict(
      {"seed": 0, "data": {"mix": "ratio", "synthetic_fraction": 0.25}})
  assert seed_spread.mix_name(seed_spread.with_mix(base, "ratio:.25").data) == \
      seed_spread.mix_name(base.data)


def test_filtered_mix_is_labelled_and_pretrain_has_no_mix_to_change():
  data = {"mix": "ratio", "synthetic_fraction": 0.25, "synthetic_keep": "k.npy"}
  outputs = {"synthetic_filter": {"min_confidence": 0.9, "kept": 5}}
  assert seed_spread.mix_label(data, outputs) == "ratio:0.25+filter:0.9"
  assert seed_spread.mix_label({**data, "synthetic_keep": ""}, {}) == "ratio:0.25"
  distilled = {**data, "synthetic_keep": "", "teacher_weight": 0.5,
               "teacher_temperature": 2.0}
  assert seed_spread.mix_label(distilled, {}) == (
      "ratio:0.25+distill:0.5+temperature:2")
  # Distilled runs get folders of their own, beside the plain runs of the same mix.
  assert seed_spread.run_name("real+synthetic", data, "", 1) == (
      "real_plus_synthetic_seed1")
  assert seed_spread.run_name("real+synthetic", distilled, "", 1) == (
      "real_plus_synthetic_distill0.5t2_seed1")
  assert seed_spread.run_name("real (distilled)", distilled, "", 1) == (
      "real_distill0.5t2_seed1")
  # An ensemble teacher's runs (targets in teachers<N>_*.npy) beside the one-teacher ones.
  ensemble = {**distilled, "real_teacher": "/w/05_classifiers/teachers2_real.npy"}
  assert seed_spread.mix_label(ensemble, {}) == (
      "ratio:0.25+distill:0.5+temperature:2+teachers:2")
  assert seed_spread.run_name("real+synthetic", ensemble, "", 1) == (
      "real_plus_synthetic_distill0.5t2_teachers2_seed1")
  one = {**distilled, "real_teacher": "/w/05_classifiers/teacher_real.npy"}
  assert seed_spread.run_name("real+synthetic", one, "", 1) == (
      "real_plus_synthetic_distill0.5t2_seed1")
  pretrain = ml_collections.ConfigDict(
      {"seed": 0, "init_from": "synthetic", "data": {"mix": "real"}})
  with pytest.raises(SystemExit, match="pretrain"):
    seed_spread.with_mix(pretrain, "concat")
