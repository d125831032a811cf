"""results/embedded_full.py: mix flags, and merging a run's rows into its record."""
import pytest

import embedded_full  # from results/ (pytest.ini's pythonpath)


def test_mix_flags():
  assert embedded_full.mix_flags("concat") == ["--config.mixed.mix=concat"]
  assert embedded_full.mix_flags("ratio:0.25+filter:0.9") == [
      "--config.mixed.mix=ratio", "--config.mixed.synthetic_fraction=0.25",
      "--config.mixed.min_confidence=0.9"]
  assert embedded_full.mix_flags("ratio:0.25+distill:0.5+temperature:2") == [
      "--config.mixed.mix=ratio", "--config.mixed.synthetic_fraction=0.25",
      "--config.mixed.distill=0.5", "--config.mixed.distill_temperature=2"]
  assert embedded_full.mix_flags("ratio:0.25+distill:0.5+teachers:2")[-1] == (
      "--config.mixed.distill_teachers=2")
  with pytest.raises(SystemExit, match=r"cannot read 'distil:0.5'.*\+distill:w"):
    embedded_full.mix_flags("concat+distil:0.5")


def test_rerun_scale_supersedes_its_row_and_keeps_the_others():
  old_1x, old_quarter = {"scale": "1×", "date": "a"}, {"scale": "0.25×", "date": "a"}
  first = embedded_full.merge_rows({}, [old_1x, old_quarter])
  assert first == {"results": [old_1x, old_quarter], "superseded": []}
  new_1x = {"scale": "1×", "date": "b"}
  second = embedded_full.merge_rows(first, [new_1x])
  assert second["results"] == [old_quarter, new_1x]
  assert second["superseded"] == [old_1x]
  newest_1x = {"scale": "1×", "date": "c"}
  third = embedded_full.merge_rows(second, [newest_1x])
  assert third["superseded"] == [old_1x, new_1x]  # Oldest first; nothing dropped.
