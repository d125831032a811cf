"""results/synthetic_selection.py: confidence bands and their parsing."""
import numpy as np
import pytest

import synthetic_selection  # from results/ (pytest.ini's pythonpath)


def test_band_keeps_lo_inclusive_hi_exclusive_and_one_inclusive():
  confidence = np.array([0.2, 0.5, 0.9, 0.999, 1.0])
  assert synthetic_selection.in_band(confidence, 0.5, 0.999).tolist() == [1, 2]
  assert synthetic_selection.in_band(confidence, 0.9, 1).tolist() == [2, 3, 4]
  assert synthetic_selection.in_band(confidence, 0, 0.5).tolist() == [0]


def test_parse_band_accepts_lo_hi_and_names_bad_ones():
  assert synthetic_selection.parse_band("0.5-0.999") == (0.5, 0.999)
  for bad in ("0.5", "0.9-0.5", "0.5-1.5", "a-b"):
    with pytest.raises(SystemExit, match="--bands"):
      synthetic_selection.parse_band(bad)
