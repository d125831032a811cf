"""Tests for the workflow report: real rendering on small fake data."""
import copy
import os
import re

import numpy as np
from PIL import Image
import pytest

from synthfactory.pipelines import report

_CLASSES = ["T-shirt/top", "Trouser", "Pull<over>", "Dress & Co"]


def _grid(k, channels=1, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (len(_CLASSES), k, 28, 28, channels), dtype=np.uint8)


def _results():
  per_class = {"real": [0.85, 0.99, 0.875, 0.9],
               "synthetic": [0.8, 0.95, 0.7, 0.85],
               "real+synthetic": [0.86, 0.99, 0.88, 0.91]}
  top1 = {"real": 0.9145, "synthetic": 0.8512, "real+synthetic": 0.91857}
  return {
      "title": "Embedded factory: Fashion-MNIST (demo)",
      "summary": ["synthetic-only reaches 0.93x real-only accuracy"],
      "workflow": {"config": "pipelines/configs/fashion.py:demo",
                   "workdir": "/tmp/wd", "command": "python -m x --flag=a|b"},
      "scale": {"real training images": 60000, "synthetic images": 2000,
                "sampler": "dpm_solver_pp, 20 steps, guidance 2.0"},
      "classifiers": {
          cond: {"train_data": f"{cond}:train", "num_train": 60000 + i,
                 "top1": top1[cond], "top5": 0.999, "per_class": per_class[cond]}
          for i, cond in enumerate(per_class)},
      "comparisons": {"synthetic / real top-1": 0.9308,
                      "real+synthetic − real top-1 (points)": 0.407},
      "fidelity": {"metric_name": "FD-fmnist",
                   "note": "Fréchet distance in a real-data classifier's features "
                           "(not FID)",
                   "rows": {"synthetic vs real test": {"FD-fmnist": 12.34,
                                                       "IS-fmnist": 8.1,
                                                       "precision": 0.7,
                                                       "recall": 0.6},
                            "real train vs real test": {"FD-fmnist": 1.5}}},
      "provenance": {"checkpoint": "sha256:abc", "sampler": {"steps": 20},
                     "seed": 0, "code_version": "abc123"},
  }


def _read(path):
  with open(path, encoding="utf-8") as f:
    return f.read()


def _md_row(markdown, first_cell):
  rows = [l for l in markdown.splitlines() if l.startswith(f"| {first_cell} |")]
  assert len(rows) == 1, (first_cell, rows)
  return [c.strip() for c in rows[0].strip("|").split(" | ")]


def _tmp_files(root):
  return [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
          if f.endswith(".tmp")]


def test_full_report(tmp_path):
  out = report.write_report(str(tmp_path), _results(), class_names=_CLASSES,
                            synthetic_grid=_grid(3), real_grid=_grid(5, seed=1))
  assert set(out["plots"]) == {"samples", "per_class_accuracy"}
  for path in [out["markdown"], out["html"], *out["plots"].values()]:
    assert os.path.isfile(path)
  # Samples: 4 rows of 28 px tiles, 3 + 5 columns, upscaled 2x: plausible bounds.
  with Image.open(out["plots"]["samples"]) as im:
    im.load()
    assert 4 * 28 * 2 <= im.height <= 600 and 8 * 28 * 2 <= im.width <= 1400
  with Image.open(out["plots"]["per_class_accuracy"]) as im:
    im.load()
    assert 300 <= im.width <= 3000 and 200 <= im.height <= 1000
  for path in out["plots"].values():
    assert os.path.getsize(path) < 300_000

  md = _read(out["markdown"])
  assert md.startswith("# Embedded factory: Fashion-MNIST (demo)\n")
  assert "- synthetic-only reaches 0.93x real-only accuracy" in md
  assert "![" in md and "](plots/samples.png)" in md
  assert "](plots/per_class_accuracy.png)" in md
  assert _md_row(md, "real") == ["real", "real:train", "60,000", "91.45", "99.90"]
  assert _md_row(md, "real+synthetic")[1:] == ["real+synthetic:train", "60,002",
                                              "91.86", "99.90"]
  assert _md_row(md, "synthetic / real top-1") == ["synthetic / real top-1",
                                                   "0.9308"]
  # Per-class table: one row per class, one column per condition.
  assert _md_row(md, "Trouser") == ["Trouser", "99.00", "95.00", "99.00"]
  assert _md_row(md, "synthetic vs real test")[1:] == ["12.34", "8.1", "0.7", "0.6"]
  assert _md_row(md, "real train vs real test")[1:] == ["1.5", "–", "–", "–"]
  assert '| sampler | {"steps": 20} |' in md.splitlines()
  # GFM splits cells at unescaped pipes, also inside code spans.
  assert "| command | `python -m x --flag=a\\|b` |" in md.splitlines()
  assert "(not FID)" in md

  page = _read(out["html"])
  srcs = re.findall(r"""\bsrc\s*=\s*["']?([^"'\s>]*)""", page)
  assert len(srcs) == 2 and all(s.startswith("data:image/png;base64,") for s in srcs)
  assert "href=" not in page and "<script" not in page
  for name in _CLASSES:
    assert __import__("html").escape(name) in page
  assert "Pull<over>" not in page and "Pull&lt;over&gt;" in page
  for top1 in ("91.45", "85.12", "91.86"):
    assert f">{top1}<" in page
  assert "Fréchet distance" in page
  assert not _tmp_files(tmp_path)


def test_rgb_grid_and_one_side_only(tmp_path):
  out = report.write_report(str(tmp_path), {"title": "t"}, class_names=_CLASSES,
                            synthetic_grid=_grid(2, channels=3), real_grid=None)
  assert set(out["plots"]) == {"samples"}
  with Image.open(out["plots"]["samples"]) as im:
    im.load()
  md = _read(out["markdown"])
  assert "plots/samples.png" in md and "Classifier accuracy" not in md


def test_missing_optional_sections(tmp_path):
  results = _results()
  for key in ("fidelity", "summary", "comparisons", "provenance", "scale"):
    del results[key]
  for entry in results["classifiers"].values():
    del entry["per_class"], entry["top5"], entry["train_data"]
  out = report.write_report(str(tmp_path), results, class_names=_CLASSES,
                            synthetic_grid=None, real_grid=None)
  assert out["plots"] == {}
  md = _read(out["markdown"])
  assert "Sample fidelity" not in md and "plots/" not in md
  assert _md_row(md, "real") == ["real", "–", "60,000", "91.45", "–"]
  assert "<img" not in _read(out["html"])

  # Nothing at all still renders a (near empty) page.
  out = report.write_report(str(tmp_path / "empty"), {}, class_names=_CLASSES,
                            synthetic_grid=None, real_grid=None)
  assert _read(out["markdown"]).startswith("# ")


def _set(results, path, value):
  node = results
  for key in path[:-1]:
    node = node[key]
  node[path[-1]] = value


@pytest.mark.parametrize("path, value, message", [
    (("classifiers", "synthetic", "per_class"), [0.5] * 3, "per_class"),
    (("classifiers", "real", "top1"), 91.45, "top1"),
    (("classifiers", "real", "num_train"), "many", "num_train"),
    (("comparisons", "synthetic / real top-1"), "high", "synthetic / real top-1"),
    (("fidelity", "rows", "synthetic vs real test", "recall"), None, "recall"),
    (("fidelity",), {"note": "n"}, "rows"),
    (("summary",), "a string, not a list", "summary"),
    (("fidelty",), {}, "fidelty"),
])
def test_malformed_section_raises_and_writes_nothing(tmp_path, path, value,
                                                     message):
  results = copy.deepcopy(_results())
  _set(results, path, value)
  with pytest.raises(ValueError, match=re.escape(message)):
    report.write_report(str(tmp_path), results, class_names=_CLASSES,
                        synthetic_grid=_grid(2), real_grid=_grid(2))
  assert not os.listdir(tmp_path)


@pytest.mark.parametrize("synthetic, real, message", [
    (_grid(2)[:3], None, "synthetic_grid"),
    (None, _grid(2).astype(np.float32), "real_grid"),
    (None, _grid(2)[..., 0], "real_grid"),
    (_grid(2), _grid(2)[:, :, :14], "real_grid"),
])
def test_malformed_grid_raises(tmp_path, synthetic, real, message):
  with pytest.raises(ValueError, match=message):
    report.write_report(str(tmp_path), _results(), class_names=_CLASSES,
                        synthetic_grid=synthetic, real_grid=real)


def test_rerun_replaces_report(tmp_path):
  report.write_report(str(tmp_path), _results(), class_names=_CLASSES,
                      synthetic_grid=_grid(2), real_grid=_grid(2))
  results = _results()
  results["title"] = "Second run"
  results["classifiers"]["real"]["top1"] = 0.5
  out = report.write_report(str(tmp_path), results, class_names=_CLASSES,
                            synthetic_grid=None, real_grid=None)
  md = _read(out["markdown"])
  assert md.startswith("# Second run\n") and "Embedded factory" not in md
  assert _md_row(md, "real")[3] == "50.00"
  assert "Second run" in _read(out["html"])
  # The samples plot is not part of this report any more: no stale file is left.
  assert sorted(os.listdir(tmp_path / "plots")) == ["per_class_accuracy.png"]
  assert sorted(os.listdir(tmp_path)) == ["plots", "report.html", "report.md"]
  assert not _tmp_files(tmp_path)
