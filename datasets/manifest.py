"""The manifest of a generated dataset, and checking a dataset folder against it.

A dataset folder holds:
  class_plan.json     the class plan, written before generation (DESIGN §3);
  dataset_spec.json   what defines the dataset's bytes: checkpoint hash, sampler
                      config, seed, batch size, image encoding, shard layout, plan,
                      package version; also written before generation, it is how a
                      re-run recognises its own (resumable) output;
  manifest.json       the spec plus, per shard, its file name, record count, per-class
                      counts and SHA-256; written last, when every shard is done;
  <name>-<split>.array_record-<k>-of-<n>   the shards.
All JSON is written with sorted keys and no timestamps, so the same dataset always
has the same bytes. A dataset folder may be local or gs:// (datasets/storage.py).
"""
import hashlib
import importlib.metadata
import json
import pathlib

import numpy as np

from synthfactory.datasets import class_plan as class_plan_lib
from synthfactory.datasets import shards as shards_lib
from synthfactory.datasets import storage

PLAN_FILE = "class_plan.json"
SPEC_FILE = "dataset_spec.json"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


class ManifestError(ValueError):
  """A manifest or spec is missing or malformed."""


def dumps(obj):
  return json.dumps(obj, sort_keys=True, indent=1) + "\n"


def write_json(path, obj):
  """Writes JSON atomically (local: temp file + rename; GCS: one upload)."""
  storage.write_bytes(path, dumps(obj).encode())


def read_json(path, what):
  try:
    raw = storage.read_bytes(path)
  except FileNotFoundError as e:
    raise ManifestError(f"No {what} at {path}.") from e
  try:
    return json.loads(raw)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ManifestError(f"{what} {path} is not valid JSON: {e}.") from e


def package_version():
  try:
    return importlib.metadata.version("synthfactory")
  except importlib.metadata.PackageNotFoundError:
    return "unknown"


def directory_sha256(path):
  """SHA-256 over every file under `path` (relative names and contents, sorted):
  the identity of a checkpoint."""
  path = pathlib.Path(path)
  digest = hashlib.sha256()
  for f in sorted(p for p in path.rglob("*") if p.is_file()):
    digest.update(str(f.relative_to(path)).encode() + b"\0")
    digest.update(shards_lib.file_sha256(f).encode())
  return digest.hexdigest()


def build(spec, shard_entries):
  """The manifest: the spec plus shard entries sorted by shard."""
  entries = sorted(shard_entries, key=lambda e: e["shard"])
  if [e["shard"] for e in entries] != list(range(spec["num_shards"])):
    raise ManifestError(f"Expected entries for shards 0 … {spec['num_shards'] - 1}, got "
                        f"{[e['shard'] for e in entries]}.")
  return {**spec, "shards": entries,
          "num_records": sum(e["num_records"] for e in entries)}


def shard_entry(spec, shard, sha256, labels):
  return {"shard": shard,
          "file": shards_lib.shard_filename(spec["name"], spec["split"], shard,
                                            spec["num_shards"]),
          "sha256": sha256, "num_records": int(len(labels)),
          "class_counts": np.bincount(labels, minlength=len(spec["plan"]["classes"])
                                      ).tolist()}


def problems(data_dir, decode_sample=8):
  """Everything wrong with a dataset folder, as a list of messages (empty: valid).

  Checks that the manifest agrees with the plan and with every shard (file present,
  SHA-256, record count: every record is read, so a damaged chunk is found too),
  that per-class counts add up to the plan's quotas, and decodes `decode_sample`
  records of each shard, comparing their (label, index) with the layout.
  """
  try:
    m = read_json(storage.join(data_dir, MANIFEST_FILE), "manifest")
    plan = class_plan_lib.ClassPlan.from_dict(m["plan"])
  except (ManifestError, class_plan_lib.ClassPlanError, KeyError) as e:
    return [f"manifest: {e}"]
  found = []
  try:
    plan_file = read_json(storage.join(data_dir, PLAN_FILE), PLAN_FILE)
    if class_plan_lib.ClassPlan.from_dict(plan_file) != plan:
      found.append(f"{PLAN_FILE} differs from the plan in the manifest.")
  except ManifestError:
    found.append(f"{PLAN_FILE} is missing or not valid JSON.")
  except class_plan_lib.ClassPlanError as e:
    found.append(f"{PLAN_FILE}: {e}")
  num_shards = m.get("num_shards", 0)
  sizes = shards_lib.shard_sizes(plan, num_shards) if num_shards else []
  totals = np.zeros(plan.num_classes, np.int64)
  entries = m.get("shards", [])
  if len(entries) != num_shards:
    found.append(f"manifest lists {len(entries)} shards, expected {num_shards}.")
  feats = None
  for e in entries:
    name = e.get("file", "?")
    if not 0 <= e.get("shard", -1) < num_shards or "class_counts" not in e:
      found.append(f"{name}: malformed manifest entry {str(e)[:200]}.")
      continue
    counts = np.asarray(e["class_counts"], np.int64)
    totals += counts if counts.shape == totals.shape else 0
    expected, expected_index = shards_lib.shard_items(plan, num_shards, e["shard"])
    if e["num_records"] != len(expected) or e["num_records"] != sizes[e["shard"]]:
      found.append(f"{name}: manifest says {e['num_records']} records, the layout has "
                   f"{len(expected)}.")
    if counts.tolist() != np.bincount(expected, minlength=plan.num_classes).tolist():
      found.append(f"{name}: manifest per-class counts differ from the layout.")
    path = storage.join(data_dir, name)
    if not storage.isfile(path):
      found.append(f"{name}: shard file is missing.")
      continue
    if feats is None:
      feats = shards_lib.features(plan.names, m["image"]["shape"],
                                  m["image"]["encoding"])
    # A gs:// shard is downloaded once, then hashed and read like a local one.
    with storage.local_copy(path) as local:
      sha = shards_lib.file_sha256(local)
      if sha != e["sha256"]:
        found.append(f"{name}: SHA-256 {sha[:12]}… differs from the manifest's "
                     f"{e['sha256'][:12]}… (the file is damaged or was replaced).")
      try:
        count, sample = 0, []
        for record in shards_lib.iter_records(local):  # Reads every chunk: §4.
          if count < decode_sample:
            sample.append(record)
          count += 1
      except shards_lib.ShardError as err:
        found.append(f"{name}: {err}")
        continue
    if count != e["num_records"]:
      found.append(f"{name}: holds {count} records, the manifest says "
                   f"{e['num_records']}.")
    found.extend(_sample_problems(name, feats, sample, expected, expected_index))
  short = np.flatnonzero(totals != plan.counts)
  for c in short[:10]:
    found.append(f"class {c} ({plan.classes[c].name}): manifest counts {totals[c]} "
                 f"images, the plan's quota is {plan.counts[c]}.")
  return found


def _sample_problems(name, feats, records, labels, indices):
  """Decodes records and compares their (label, index) with the layout's."""
  for i, record in enumerate(records[:len(labels)]):
    try:
      ex = feats.deserialize_example_np(record)
    except Exception as err:  # pylint: disable=broad-except  (any decode failure)
      return [f"{name}: record {i} cannot be decoded: {err}"]
    if (int(ex["label"]), int(ex["index"])) != (labels[i], indices[i]):
      return [f"{name}: record {i} is item ({ex['label']}, {ex['index']}), the "
              f"layout puts ({labels[i]}, {indices[i]}) there."]
  return []
