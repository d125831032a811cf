"""The workflow's report: Markdown, a self-contained HTML page, and PNG plots.

`write_report` validates the whole `results` dict first, renders everything in
memory, and only then writes: a malformed section raises before any file changes,
and each file is written to `<name>.tmp` and renamed, so a crash never leaves a
half-written report. Both documents are rendered from one list of blocks (headings,
bullets, tables, images), so the Markdown and the HTML always say the same thing.

Plots use `matplotlib.figure.Figure` directly (no pyplot): no global state, no GUI
backend, safe in worker threads.
"""
import base64
import dataclasses
import html
import io
import json
import math
import numbers
import os
from typing import Any, Sequence

from matplotlib import figure as mpl_figure
import numpy as np

PLOTS_DIR = "plots"
SAMPLES_PLOT = "samples"
PER_CLASS_PLOT = "per_class_accuracy"

_SECTIONS = ("title", "summary", "workflow", "scale", "classifiers", "comparisons",
             "fidelity", "provenance")
_MISSING = "–"
_DPI = 100
_BACKGROUND = 255  # white gutters separate the (mostly black-background) tiles


# ----------------------------------------------------------------------------
# Blocks: the document's content, independent of the output format.


@dataclasses.dataclass(frozen=True)
class _Code:
  """A table cell or paragraph rendered as code (`...` / <code>)."""
  text: str


@dataclasses.dataclass(frozen=True)
class _Heading:
  text: str
  level: int = 2


@dataclasses.dataclass(frozen=True)
class _Bullets:
  items: Sequence[str]


@dataclasses.dataclass(frozen=True)
class _Paragraph:
  text: str


@dataclasses.dataclass(frozen=True)
class _Table:
  header: Sequence[str]
  rows: Sequence[Sequence[Any]]  # cells: str or _Code
  align: str  # one char per column: "l" or "r"


@dataclasses.dataclass(frozen=True)
class _Image:
  name: str  # a key of the plots dict
  alt: str


# ----------------------------------------------------------------------------
# Validation: a present section must be well formed; a missing one is skipped.


def _is_number(x):
  return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_mapping(value, where):
  if not isinstance(value, dict):
    raise ValueError(f"{where} must be a dict, got {type(value).__name__}.")


def _check_number(value, where):
  if not _is_number(value):
    raise ValueError(f"{where} must be a number, got {value!r}.")


def _check_fraction(value, where):
  # Accuracies are fractions; a percentage here would silently print as 9145 %.
  _check_number(value, where)
  if not 0.0 <= float(value) <= 1.0:
    raise ValueError(f"{where} must be a fraction in [0, 1], got {value!r}.")


def _check_classifiers(classifiers, num_classes):
  _check_mapping(classifiers, "results['classifiers']")
  for cond, entry in classifiers.items():
    where = f"results['classifiers'][{cond!r}]"
    _check_mapping(entry, where)
    if "top1" not in entry:
      raise ValueError(f"{where} has no 'top1'.")
    _check_fraction(entry["top1"], f"{where}['top1']")
    if entry.get("top5") is not None:
      _check_fraction(entry["top5"], f"{where}['top5']")
    num_train = entry.get("num_train")
    if num_train is not None and not (isinstance(num_train, numbers.Integral) and
                                      not isinstance(num_train, bool) and
                                      num_train >= 0):
      raise ValueError(f"{where}['num_train'] must be a non-negative int, got "
                       f"{num_train!r}.")
    per_class = entry.get("per_class")
    if per_class is not None:
      if isinstance(per_class, np.ndarray) and per_class.ndim == 1:
        per_class = per_class.tolist()
      if not isinstance(per_class, (list, tuple)) or len(per_class) != num_classes:
        got = (f"{len(per_class)} entries" if isinstance(per_class, (list, tuple))
               else repr(per_class))
        raise ValueError(f"{where}['per_class'] must list {num_classes} accuracies "
                         f"(one per class name), got {got}.")
      for i, acc in enumerate(per_class):
        _check_fraction(acc, f"{where}['per_class'][{i}]")


def _check_fidelity(fidelity):
  _check_mapping(fidelity, "results['fidelity']")
  for key in ("metric_name", "note"):
    if fidelity.get(key) is not None and not isinstance(fidelity[key], str):
      raise ValueError(f"results['fidelity'][{key!r}] must be a str.")
  if "rows" not in fidelity:
    raise ValueError("results['fidelity'] has no 'rows'.")
  _check_mapping(fidelity["rows"], "results['fidelity']['rows']")
  for row, metrics in fidelity["rows"].items():
    where = f"results['fidelity']['rows'][{row!r}]"
    _check_mapping(metrics, where)
    for metric, value in metrics.items():
      _check_number(value, f"{where}[{metric!r}]")


def _check_grid(grid, name, num_classes):
  where = f"{name} (shape {getattr(grid, 'shape', None)})"
  if not isinstance(grid, np.ndarray) or grid.dtype != np.uint8:
    raise ValueError(f"{name} must be a uint8 numpy array, got "
                     f"{getattr(grid, 'dtype', type(grid).__name__)}.")
  if grid.ndim != 5 or grid.shape[4] not in (1, 3):
    raise ValueError(f"{where} must be [classes, k, H, W, 1 or 3].")
  if grid.shape[0] != num_classes:
    raise ValueError(f"{where} has {grid.shape[0]} classes, expected "
                     f"{num_classes} (one per class name).")
  if min(grid.shape[1:4]) < 1:
    raise ValueError(f"{where} is empty.")


def _validate(results, class_names, synthetic_grid, real_grid):
  """Raises ValueError naming the first malformed part of the inputs."""
  _check_mapping(results, "results")
  unknown = sorted(set(results) - set(_SECTIONS))
  if unknown:  # most likely a typo, which would silently drop a section
    raise ValueError(f"results has unknown sections {unknown}; known: "
                     f"{list(_SECTIONS)}.")
  if (not isinstance(class_names, (list, tuple)) or not class_names or
      not all(isinstance(n, str) for n in class_names)):
    raise ValueError(f"class_names must be a non-empty list of str, got "
                     f"{class_names!r}.")
  if "title" in results and not isinstance(results["title"], str):
    raise ValueError("results['title'] must be a str.")
  summary = results.get("summary")
  if summary is not None and (not isinstance(summary, (list, tuple)) or
                              not all(isinstance(s, str) for s in summary)):
    raise ValueError(f"results['summary'] must be a list of str, got {summary!r}.")
  for key in ("workflow", "scale", "provenance"):
    if results.get(key) is not None:
      _check_mapping(results[key], f"results[{key!r}]")
  if results.get("comparisons") is not None:
    _check_mapping(results["comparisons"], "results['comparisons']")
    for key, value in results["comparisons"].items():
      _check_number(value, f"results['comparisons'][{key!r}]")
  if results.get("classifiers") is not None:
    _check_classifiers(results["classifiers"], len(class_names))
  if results.get("fidelity") is not None:
    _check_fidelity(results["fidelity"])
  grids = [(g, n) for g, n in ((synthetic_grid, "synthetic_grid"),
                               (real_grid, "real_grid")) if g is not None]
  for grid, name in grids:
    _check_grid(grid, name, len(class_names))
  if len(grids) == 2 and synthetic_grid.shape[2:4] != real_grid.shape[2:4]:
    raise ValueError(f"synthetic_grid images are {synthetic_grid.shape[2:4]} but "
                     f"real_grid images are {real_grid.shape[2:4]}; resize one.")


# ----------------------------------------------------------------------------
# Formatting.


def _pct(fraction):
  return _MISSING if fraction is None else f"{100.0 * float(fraction):.2f}"


def _fmt(value):
  """Counts with thousands separators, floats to 4 significant digits."""
  if value is None:
    return _MISSING
  if isinstance(value, numbers.Integral) and not isinstance(value, bool):
    return f"{int(value):,}"
  if _is_number(value):
    value = float(value)
    if math.isfinite(value) and abs(value) >= 1e4:
      return f"{value:,.0f}"
    return f"{value:.4g}"
  if isinstance(value, (dict, list, tuple)):
    return json.dumps(value, ensure_ascii=False, default=str)
  return str(value)


# ----------------------------------------------------------------------------
# Plots.


def _png_bytes(fig):
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=_DPI)
  return buf.getvalue()


def _tile_block(grid, pad, rgb):
  """[C, k, H, W, ch] -> one [C*(H+pad), k*(W+pad), ch] mosaic, gutters right/below."""
  if rgb and grid.shape[-1] == 1:
    grid = np.repeat(grid, 3, axis=-1)
  c, k, h, w, ch = grid.shape
  grid = np.pad(grid, ((0, 0), (0, 0), (0, pad), (0, pad), (0, 0)),
                constant_values=_BACKGROUND)
  return grid.transpose(0, 2, 1, 3, 4).reshape(c * (h + pad), k * (w + pad), ch)


def _samples_png(class_names, blocks):
  """A row per class; one block of columns per (header, grid) in `blocks`."""
  rgb = any(grid.shape[-1] == 3 for _, grid in blocks)
  h, w = blocks[0][1].shape[2:4]
  pad, gap = 2, 8
  tiles = [_tile_block(grid, pad, rgb) for _, grid in blocks]
  parts, centers, x = [], [], pad
  for i, tile in enumerate(tiles):
    if i:
      parts.append(np.full((tile.shape[0], gap, tile.shape[2]), _BACKGROUND,
                           np.uint8))
      x += gap
    parts.append(tile)
    centers.append(x + (tile.shape[1] - pad) / 2)
    x += tile.shape[1]
  mosaic = np.pad(np.concatenate(parts, axis=1), ((pad, 0), (pad, 0), (0, 0)),
                  constant_values=_BACKGROUND)
  # Integer nearest-neighbour upscaling in numpy keeps the tiny images crisp; the
  # axes below are exactly the mosaic's size, so matplotlib draws it 1:1.
  scale = max(1, min(64 // max(h, w), 1600 // mosaic.shape[1]))
  mosaic = np.repeat(np.repeat(mosaic, scale, axis=0), scale, axis=1)
  if not rgb:
    mosaic = mosaic[..., 0]
  height, width = mosaic.shape[:2]
  left = 16 + 7 * max(len(n) for n in class_names)  # ~7 px per 9 pt character
  top, right, bottom = 24, 8, 8
  fig_w, fig_h = width + left + right, height + top + bottom
  fig = mpl_figure.Figure(figsize=(fig_w / _DPI, fig_h / _DPI), dpi=_DPI)
  ax = fig.add_axes((left / fig_w, bottom / fig_h, width / fig_w, height / fig_h))
  ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255, interpolation="nearest",
            aspect="auto")
  row_height = (h + pad) * scale
  ax.set_yticks([(pad + 0.5 * h) * scale + i * row_height
                 for i in range(len(class_names))], labels=class_names, fontsize=9)
  ax.set_xticks([(pad + c) * scale for c in centers],
                labels=[header for header, _ in blocks], fontsize=10)
  ax.xaxis.tick_top()
  ax.tick_params(length=0)
  for spine in ax.spines.values():
    spine.set_visible(False)
  return _png_bytes(fig)


def _per_class_png(class_names, per_class):
  """Grouped bars: one group per class, one bar per condition ({cond: [C]})."""
  n_cond, n_cls = len(per_class), len(class_names)
  fig = mpl_figure.Figure(figsize=(min(max(6.0, 0.25 * n_cls * (n_cond + 1) + 1.5),
                                       30.0), 4.0), dpi=_DPI, layout="constrained")
  ax = fig.add_subplot()
  width = 0.8 / n_cond
  x = np.arange(n_cls)
  for i, (cond, accs) in enumerate(per_class.items()):
    ax.bar(x + (i - (n_cond - 1) / 2) * width, 100.0 * np.asarray(accs, float),
           width, label=cond)
  ax.set_xticks(x, labels=class_names, rotation=45, ha="right", fontsize=9)
  ax.set_xlim(-0.6, n_cls - 0.4)
  ax.set_ylim(0, 100)
  ax.set_ylabel("top-1 accuracy (%)")
  ax.yaxis.grid(True, alpha=0.3)
  ax.set_axisbelow(True)
  fig.legend(loc="outside upper center", ncols=min(n_cond, 4), frameon=False)
  return _png_bytes(fig)


# ----------------------------------------------------------------------------
# Sections.


def _kv_table(mapping, header, code_keys=()):
  rows = [[str(k), _Code(_fmt(v)) if k in code_keys else _fmt(v)]
          for k, v in mapping.items()]
  return _Table(header, rows, "ll")


def _accuracy_blocks(classifiers, comparisons):
  blocks = [_Heading("Classifier accuracy")]
  if classifiers:
    rows = [[cond, _fmt(e.get("train_data")), _fmt(e.get("num_train")),
             _pct(e["top1"]), _pct(e.get("top5"))] for cond, e in classifiers.items()]
    blocks.append(_Table(["condition", "train data", "# train images",
                          "top-1 (%)", "top-5 (%)"], rows, "llrrr"))
  if comparisons:
    blocks.append(_Table(["comparison", "value"],
                         [[k, _fmt(v)] for k, v in comparisons.items()], "lr"))
  return blocks


def _per_class_blocks(class_names, per_class):
  rows = [[name] + [_pct(accs[i]) for accs in per_class.values()]
          for i, name in enumerate(class_names)]
  return [_Heading("Per-class top-1 accuracy"),
          _Image(PER_CLASS_PLOT, "per-class top-1 accuracy by training data"),
          _Table(["class"] + [f"{c} (%)" for c in per_class], rows,
                 "l" + "r" * len(per_class))]


def _fidelity_blocks(fidelity):
  blocks = [_Heading("Sample fidelity")]
  if fidelity.get("note"):
    name = fidelity.get("metric_name")
    blocks.append(_Paragraph(f"{name}: {fidelity['note']}" if name
                             else fidelity["note"]))
  metrics = []
  for row in fidelity["rows"].values():
    metrics += [m for m in row if m not in metrics]
  rows = [[name] + [_fmt(row.get(m)) for m in metrics]
          for name, row in fidelity["rows"].items()]
  blocks.append(_Table(["comparison"] + metrics, rows, "l" + "r" * len(metrics)))
  return blocks


def _build(results, class_names, synthetic_grid, real_grid):
  """Returns (blocks, {plot name: PNG bytes})."""
  blocks, plots = [_Heading(results.get("title") or "Report", 1)], {}
  if results.get("summary"):
    blocks.append(_Bullets(results["summary"]))
  if results.get("workflow"):
    blocks += [_Heading("Workflow"),
               _kv_table(results["workflow"], ("setting", "value"),
                         code_keys=("config", "workdir", "command"))]
  if results.get("scale"):
    blocks += [_Heading("Scale"),
               _kv_table(results["scale"], ("quantity", "value"))]
  grids = [(h, g) for h, g in (("synthetic", synthetic_grid), ("real", real_grid))
           if g is not None]
  if grids:
    plots[SAMPLES_PLOT] = _samples_png(class_names, grids)
    blocks += [_Heading("Samples"),
               _Image(SAMPLES_PLOT, "sample images per class: "
                      + " / ".join(h for h, _ in grids))]
  classifiers = results.get("classifiers") or {}
  if classifiers or results.get("comparisons"):
    blocks += _accuracy_blocks(classifiers, results.get("comparisons"))
  per_class = {c: list(np.asarray(e["per_class"], float).ravel())
               for c, e in classifiers.items() if e.get("per_class") is not None}
  if per_class:
    plots[PER_CLASS_PLOT] = _per_class_png(class_names, per_class)
    blocks += _per_class_blocks(class_names, per_class)
  if results.get("fidelity"):
    blocks += _fidelity_blocks(results["fidelity"])
  if results.get("provenance"):
    blocks += [_Heading("Provenance"),
               _kv_table(results["provenance"], ("field", "value"))]
  return blocks, plots


# ----------------------------------------------------------------------------
# Renderers.


def _md_text(cell):
  # GFM splits table cells at every unescaped pipe, inside code spans too.
  text = cell.text if isinstance(cell, _Code) else str(cell)
  text = text.replace("|", "\\|").replace("\n", " ")
  if isinstance(cell, _Code) and "`" not in text:  # a backtick would end the span
    return f"`{text}`"
  return text


def _to_markdown(blocks):
  out = []
  for b in blocks:
    if isinstance(b, _Heading):
      out.append(f"{'#' * b.level} {_md_text(b.text)}")
    elif isinstance(b, _Bullets):
      out.append("\n".join(f"- {_md_text(s)}" for s in b.items))
    elif isinstance(b, _Paragraph):
      out.append(b.text)
    elif isinstance(b, _Image):
      out.append(f"![{_md_text(b.alt)}]({PLOTS_DIR}/{b.name}.png)")
    elif isinstance(b, _Table):
      lines = [[_md_text(c) for c in b.header],
               ["---:" if a == "r" else "---" for a in b.align]]
      lines += [[_md_text(c) for c in row] for row in b.rows]
      out.append("\n".join("| " + " | ".join(line) + " |" for line in lines))
  return "\n\n".join(out) + "\n"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 72rem;
       margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; }
th { background: #f2f2f2; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; }
code { background: #f5f5f5; padding: 0 0.2rem; }
img { max-width: 100%; image-rendering: pixelated; }
"""


def _html_cell(cell):
  if isinstance(cell, _Code):
    return f"<code>{html.escape(cell.text)}</code>"
  return html.escape(str(cell))


def _to_html(blocks, plots):
  title = next(b.text for b in blocks if isinstance(b, _Heading))
  out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
         f"<title>{html.escape(title)}</title>", f"<style>{_CSS}</style>", "</head>",
         "<body>"]
  for b in blocks:
    if isinstance(b, _Heading):
      out.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
    elif isinstance(b, _Bullets):
      out.append("<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in b.items)
                 + "</ul>")
    elif isinstance(b, _Paragraph):
      out.append(f"<p>{html.escape(b.text)}</p>")
    elif isinstance(b, _Image):
      data = base64.b64encode(plots[b.name]).decode("ascii")
      out.append(f'<p><img src="data:image/png;base64,{data}" '
                 f'alt="{html.escape(b.alt)}"></p>')
    elif isinstance(b, _Table):
      cls = [' class="r"' if a == "r" else "" for a in b.align]
      head = "".join(f"<th{c}>{html.escape(h)}</th>" for c, h in zip(cls, b.header))
      body = "".join("<tr>" + "".join(f"<td{c}>{_html_cell(v)}</td>"
                                      for c, v in zip(cls, row)) + "</tr>"
                     for row in b.rows)
      out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
                 "</table>")
  out += ["</body>", "</html>"]
  return "\n".join(out) + "\n"


def _write_atomic(path, data):
  tmp = f"{path}.tmp"
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)


def write_report(out_dir, results, *, class_names, synthetic_grid, real_grid):
  """Renders report.md, report.html and plots/*.png into out_dir; returns
  {"markdown": path, "html": path, "plots": {name: path}}.

  Args:
    out_dir: directory to write into (created if missing); an existing report
      there is replaced, and plots this run does not draw are removed.
    results: dict of optional sections (see the module's callers): title, summary,
      workflow, scale, classifiers, comparisons, fidelity, provenance. Accuracies
      are fractions in [0, 1].
    class_names: list of C class names, in label order.
    synthetic_grid: uint8 [C, k, H, W, 1 or 3] example images per class, or None.
    real_grid: the same for real images (its k may differ), or None.

  Raises:
    ValueError: naming the malformed part of a present section; nothing is
      written then.
  """
  _validate(results, class_names, synthetic_grid, real_grid)
  blocks, pngs = _build(results, list(class_names), synthetic_grid, real_grid)
  markdown = _to_markdown(blocks)
  page = _to_html(blocks, pngs)

  plots_dir = os.path.join(out_dir, PLOTS_DIR)
  os.makedirs(plots_dir, exist_ok=True)
  plots = {}
  for name in (SAMPLES_PLOT, PER_CLASS_PLOT):
    path = os.path.join(plots_dir, f"{name}.png")
    if name in pngs:
      _write_atomic(path, pngs[name])
      plots[name] = path
    elif os.path.exists(path):  # stale from an earlier run; nothing refers to it
      os.remove(path)
  md_path = os.path.join(out_dir, "report.md")
  html_path = os.path.join(out_dir, "report.html")
  _write_atomic(md_path, markdown.encode("utf-8"))
  _write_atomic(html_path, page.encode("utf-8"))
  return {"markdown": md_path, "html": html_path, "plots": plots}
