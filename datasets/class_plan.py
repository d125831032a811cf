"""Class plans (DESIGN §3): how many images of each class a synthetic dataset holds.

A plan is N× a real dataset's per-class training counts (or a uniform count), with
exact integer quotas: the total is round(N × real total) and it is split over the
classes by the largest-remainder method, so the quotas always add up to it exactly.
Items are addressed as (label, index), index 0 … quota − 1 within the class.
"""
import dataclasses
import fractions
import functools
import importlib.resources
import json
import math

import numpy as np

MAX_MULTIPLIER = 10
FORMAT_VERSION = 1
_IMAGENET_FILE = "imagenet2012_classes.json"


class ClassPlanError(ValueError):
  """A class plan cannot be built, read, or is not met by a dataset."""


@dataclasses.dataclass(frozen=True)
class ClassEntry:
  label: int        # Position in the label space (the ClassLabel index).
  id: str           # Stable identifier, e.g. a WordNet id.
  name: str         # Human-readable name.
  base_count: int   # The real dataset's count the quota was scaled from.
  count: int        # The quota: exactly this many images of the class.


@dataclasses.dataclass(frozen=True)
class ClassPlan:
  source: str        # What the base counts came from, e.g. "imagenet2012:train".
  multiplier: str    # N, as an exact decimal string ("4", "0.5").
  classes: tuple     # ClassEntry per label, in label order.

  @property
  def num_classes(self):
    return len(self.classes)

  @property
  def total(self):
    return sum(c.count for c in self.classes)

  @property
  def counts(self):
    return np.array([c.count for c in self.classes], np.int64)

  @property
  def names(self):
    return [c.name for c in self.classes]

  def to_dict(self):
    return {"format": FORMAT_VERSION, "source": self.source,
            "multiplier": self.multiplier, "num_classes": self.num_classes,
            "total": self.total,
            "classes": [dataclasses.asdict(c) for c in self.classes]}

  def to_json(self):
    # One class per line: readable, diffable, and byte-stable for a given plan.
    d = self.to_dict()
    head = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in d.items() if k != "classes"]
    lines = [f"  {json.dumps(c)}" for c in d["classes"]]
    return ("{\n" + ",\n".join(head) + ',\n "classes": [\n' + ",\n".join(lines)
            + "\n ]\n}\n")

  @classmethod
  def from_dict(cls, d):
    try:
      if d["format"] != FORMAT_VERSION:
        raise ClassPlanError(f"Class plan format {d['format']} is not supported "
                             f"(this code reads format {FORMAT_VERSION}).")
      classes = tuple(ClassEntry(**c) for c in d["classes"])
      plan = cls(source=d["source"], multiplier=d["multiplier"], classes=classes)
    except (KeyError, TypeError) as e:
      raise ClassPlanError(f"Malformed class plan ({type(e).__name__}: {e}); write "
                           "plans with ClassPlan.write.") from e
    if [c.label for c in classes] != list(range(len(classes))):
      raise ClassPlanError("Class plan labels must be 0 … num_classes − 1 in order.")
    if d.get("total", plan.total) != plan.total:
      raise ClassPlanError(f"Class plan says total {d['total']} but its quotas add up "
                           f"to {plan.total}: the file was edited or damaged.")
    return plan

  def write(self, path):
    """Writes the plan as JSON to `path` (an epath/pathlib path or str)."""
    _path(path).write_text(self.to_json())

  @classmethod
  def read(cls, path):
    path = _path(path)
    if not path.exists():
      raise ClassPlanError(f"No class plan at {path}.")
    try:
      return cls.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as e:
      raise ClassPlanError(f"Class plan {path} is not valid JSON: {e}.") from e

  def problems(self, labels, indices):
    """What is wrong with a set of generated items (parallel label/index arrays):
    a list of human-readable problems, empty when every class has exactly its quota,
    every index is in range and no (label, index) occurs twice."""
    labels, indices = np.asarray(labels, np.int64), np.asarray(indices, np.int64)
    found = []
    bad_label = (labels < 0) | (labels >= self.num_classes)
    if bad_label.any():
      found.append(f"{bad_label.sum()} items have labels outside 0 … "
                   f"{self.num_classes - 1} (e.g. {labels[bad_label][0]}).")
      labels, indices = labels[~bad_label], indices[~bad_label]
    counts = self.counts
    out_of_range = (indices < 0) | (indices >= counts[labels])
    if out_of_range.any():
      i = np.flatnonzero(out_of_range)[0]
      found.append(f"{out_of_range.sum()} items have an index outside their class "
                   f"quota (e.g. class {labels[i]} index {indices[i]}, quota "
                   f"{counts[labels[i]]}).")
    pairs = np.stack([labels, indices], axis=1)
    duplicates = len(pairs) - len(np.unique(pairs, axis=0))
    if duplicates:
      found.append(f"{duplicates} (class, index) items occur more than once.")
    have = np.bincount(labels[~out_of_range], minlength=self.num_classes)
    short = np.flatnonzero(have != counts)
    for c in short[:10]:
      found.append(f"class {c} ({self.classes[c].name}) has {have[c]} items, its quota "
                   f"is {counts[c]}.")
    if len(short) > 10:
      found.append(f"… and {len(short) - 10} more classes miss their quota.")
    return found

  def check(self, labels, indices):
    """Raises ClassPlanError naming every problem of `problems`; else returns."""
    found = self.problems(labels, indices)
    if found:
      raise ClassPlanError("The generated items do not meet the class plan:\n  "
                           + "\n  ".join(found))


def _path(path):
  from etils import epath  # pylint: disable=g-import-not-at-top  (local and gs://)
  return epath.Path(path)


def parse_multiplier(multiplier):
  """N as an exact Fraction; 0 < N ≤ 10 (fractions allowed, e.g. 0.5 for demos)."""
  if isinstance(multiplier, bool) or not isinstance(
      multiplier, (int, float, str, fractions.Fraction, np.integer, np.floating)):
    raise ClassPlanError(f"Multiplier must be a number, got {multiplier!r}.")
  try:
    # str() first: 0.1 is 1/10 here, not the binary float nearest to it.
    n = fractions.Fraction(str(multiplier).strip().rstrip("xX"))
  except (ValueError, ZeroDivisionError) as e:
    raise ClassPlanError(f"Multiplier {multiplier!r} is not a number; pass e.g. 1, 4 "
                         "or 0.5.") from e
  if not 0 < n <= MAX_MULTIPLIER:
    raise ClassPlanError(f"Multiplier must be in (0, {MAX_MULTIPLIER}] (N× the real "
                         f"per-class counts), got {multiplier!r}.")
  return n


def _decimal(n):
  """Fraction → shortest exact decimal string, or 'p/q' when it has none."""
  if n.denominator == 1:
    return str(n.numerator)
  for digits in range(1, 19):
    if (n * 10 ** digits).denominator == 1:
      return f"{float(n):.{digits}f}"
  return f"{n.numerator}/{n.denominator}"


def quotas(base_counts, multiplier):
  """Largest-remainder quotas: N × base_counts as integers summing to round(N × total).

  Ties in the remainder go to the lower label, so the result is a pure function of
  the inputs.
  """
  n = parse_multiplier(multiplier)
  base = [int(c) for c in base_counts]
  if any(c < 0 for c in base):
    raise ClassPlanError("Per-class counts must be ≥ 0.")
  exact = [n * c for c in base]
  total = math.floor(n * sum(base) + fractions.Fraction(1, 2))
  floors = [math.floor(e) for e in exact]
  left = total - sum(floors)
  by_remainder = sorted(range(len(base)), key=lambda i: (-(exact[i] - floors[i]), i))
  for i in by_remainder[:left]:
    floors[i] += 1
  return floors


def from_counts(base_counts, multiplier, *, source, ids=None, names=None):
  """A plan of N× `base_counts` (one count per label)."""
  base_counts = [int(c) for c in base_counts]
  if not base_counts:
    raise ClassPlanError("A class plan needs at least one class.")
  k = len(base_counts)
  ids = [str(i) for i in range(k)] if ids is None else [str(i) for i in ids]
  names = ids if names is None else [str(n) for n in names]
  if len(ids) != k or len(names) != k:
    raise ClassPlanError(f"Got {k} counts, {len(ids)} ids and {len(names)} names; "
                         "give one of each per class.")
  counts = quotas(base_counts, multiplier)
  classes = tuple(ClassEntry(label=i, id=ids[i], name=names[i],
                             base_count=base_counts[i], count=counts[i])
                  for i in range(k))
  return ClassPlan(source=source, multiplier=_decimal(parse_multiplier(multiplier)),
                   classes=classes)


def from_labels(labels, multiplier, *, source, num_classes=None, ids=None, names=None):
  """A plan of N× the label histogram of a real dataset (e.g. its train labels)."""
  labels = np.asarray(labels, np.int64)
  if labels.size and labels.min() < 0:
    raise ClassPlanError("Labels must be ≥ 0.")
  num_classes = num_classes or (len(names) if names is not None else
                                int(labels.max(initial=-1)) + 1)
  if labels.size and labels.max() >= num_classes:
    raise ClassPlanError(f"Label {labels.max()} is outside {num_classes} classes.")
  counts = np.bincount(labels, minlength=num_classes)
  return from_counts(counts, multiplier, source=source, ids=ids, names=names)


def uniform(num_classes, per_class, multiplier=1, *, source="uniform", ids=None,
            names=None):
  """A plan with the same base count for every class."""
  return from_counts([per_class] * num_classes, multiplier, source=source, ids=ids,
                     names=names)


@functools.cache
def _imagenet2012_classes():
  text = (importlib.resources.files("synthfactory.datasets") / "data" /
          _IMAGENET_FILE).read_text()
  return tuple(json.loads(text)["classes"])


def imagenet2012_ids():
  """ImageNet-2012's 1000 WordNet ids in label order (sorted ids, as TFDS)."""
  return [c["id"] for c in _imagenet2012_classes()]


def imagenet2012_names():
  """ImageNet-2012's 1000 CLIP-style readable names in label order ("tench", …).

  They are also the class prompts of the text-conditioned U-Nets (DESIGN §5).
  """
  return [c["name"] for c in _imagenet2012_classes()]


def imagenet2012(multiplier):
  """N× ImageNet-2012's train counts (1000 classes, 1,281,167 images at 1×).

  Class ids are WordNet ids, names the CLIP-style readable names.
  """
  classes = _imagenet2012_classes()
  return from_counts([c["count"] for c in classes], multiplier,
                     source="imagenet2012:train", ids=imagenet2012_ids(),
                     names=imagenet2012_names())


def fashion_mnist(multiplier, split="train"):
  """N× Fashion-MNIST's per-class counts of `split` (6000 a class in train)."""
  from synthfactory.datasets import fashion_mnist as fmnist  # pylint: disable=g-import-not-at-top
  _, labels = fmnist.load(split)
  return from_labels(labels, multiplier, source=f"fashion_mnist:{split}",
                     names=list(fmnist.CLASS_NAMES))


def from_tfds(name, multiplier, split="train", data_dir=None):
  """N× the label histogram of `split` of a prepared TFDS dataset.

  `name` is "name[/config][:version]"; the dataset needs a ClassLabel `label`, whose
  names become the class ids and names. Reads every label of the split once.
  """
  from synthfactory.datasets import tfds_labels  # pylint: disable=g-import-not-at-top
  counts, names, full_name = tfds_labels.label_counts(name, split, data_dir)
  return from_counts(counts, multiplier, source=f"tfds:{full_name}:{split}",
                     ids=names, names=names)
