"""Stage `classifiers`: one classifier per training-data condition (real only,
synthetic only, real + synthetic), the same recipe for each, every one evaluated on
the real test split.

Conditions map to the classifier job's data mixes: "real", "synthetic" and
"real+synthetic", whose mix is the config's `mixed.mix`: "concat" (an epoch is a pass
over the union, paper Table 4), "ratio" (`mixed.synthetic_fraction` of every batch
synthetic, an epoch a pass over the real data) or "pretrain" (the real data alone,
starting from the synthetic-only classifier's weights: pretraining on synthetic data,
then fine-tuning on real, which the paper does not try). With `mixed.min_confidence`
p > 0 the real+synthetic classifier trains only on the synthetic images to which the
real-only classifier gives probability ≥ p of the class they were generated for (a
filter the paper does not use: it drops the images a real-trained eye finds ambiguous
or mislabelled; the synthetic-only classifier still sees them all, as CAS does).
With `mixed.distill` w > 0 (the paper does not try it either) the real+synthetic
classifier learns from soft targets: (1 - w) · each image's label + w · the real-only
classifier's probabilities for it (at temperature `mixed.distill_temperature`), on the
real and the synthetic images alike; so that the gain is the synthetic images' and not
the distillation's, the stage then trains the control "real (distilled)": the real
images alone with the same targets.

Each run lives in `<stage>/<condition>/` with the config it trains (run_config.json)
and resumes from its checkpoints; a finished run (its eval.json at the last step) is
not redone, and a run whose config changed starts afresh. The real+synthetic run has a
folder per mix (`real_plus_synthetic_concat`, `…_ratio0.25_filter0.9`): trying another
mix trains only that one, and coming back to an earlier mix finds it trained.
"""
import json
import os
import pathlib
import re
import shutil

from absl import logging
import numpy as np

from synthfactory.models import classifiers as classifier_models
from synthfactory.pipelines import runner
from synthfactory.pipelines.stages import common
from synthfactory.training import classifier_data
from synthfactory.training import classifier_trainer

CONDITIONS = ("real", "synthetic", "real+synthetic")
MIXED = ("concat", "ratio", "pretrain")
RUN_CONFIG = "run_config.json"


def mix_name(mixed):
  """The real+synthetic mix's folder name: "concat", "ratio0.25", "concat_filter0.9"."""
  name = mixed.mix + (f"{mixed.synthetic_fraction:g}" if mixed.mix == "ratio" else "")
  threshold = mixed.get("min_confidence", 0.0)
  name = f"{name}_filter{threshold:g}" if threshold else name
  return name + _distill_suffix(mixed)


def _distill_suffix(mixed):
  weight = mixed.get("distill", 0.0)
  if not weight:
    return ""
  teachers = num_teachers(mixed)
  return (f"_distill{weight:g}t{mixed.get('distill_temperature', 1.0):g}"
          + (f"_teachers{teachers}" if teachers > 1 else ""))


def num_teachers(mixed):
  """How many real-only classifiers the distillation's teacher averages (1: the
  real-only condition's alone)."""
  return mixed.get("distill_teachers", 1) if mixed.get("distill", 0.0) else 1


def teacher_seeds(config):
  """The extra teachers' training seeds: the N - 1 seeds after the classifier's."""
  return [config.classifier.seed + k for k in range(1, num_teachers(config.mixed))]


def _teacher_condition(seed):
  return f"real (seed {seed})"


def _teacher_seed(condition):
  """The seed of an ensemble teacher's extra member ("real (seed k)"), else None."""
  found = re.fullmatch(r"real \(seed (\d+)\)", condition)
  return int(found[1]) if found else None


def synthetic_keep_file(threshold):
  """In the stage folder: the filter's kept indices at one confidence threshold."""
  return f"synthetic_keep_{threshold:g}.npy"


def missing(config):
  """Problems of the real+synthetic mix, found before any stage runs."""
  if "real+synthetic" not in config.conditions:
    return []
  mix, fraction = config.mixed.mix, config.mixed.synthetic_fraction
  batch = config.classifier.batch_size
  threshold = config.mixed.get("min_confidence", 0.0)
  if not 0 <= threshold < 1:
    return [f"config.mixed.min_confidence={threshold} is not a probability in [0, 1): "
            f"0 keeps every synthetic image, e.g. 0.9 keeps those the real-only "
            f"classifier is 90% sure of."]
  conditions = list(config.conditions)
  weight = config.mixed.get("distill", 0.0)
  if weight and not (0 < weight <= 1 and config.mixed.get("distill_temperature", 1.0)
                     > 0):
    return [f"config.mixed.distill={weight} (temperature "
            f"{config.mixed.get('distill_temperature', 1.0)}) is not a weight in [0, 1] "
            f"with a temperature > 0: 0 trains on the labels alone, 1 on the real-only "
            f"classifier's probabilities alone."]
  teachers = config.mixed.get("distill_teachers", 1)
  if weight and not (isinstance(teachers, int) and teachers >= 1):
    return [f"config.mixed.distill_teachers={teachers!r} is not a number of teachers: "
            f"1 distills the real-only classifier alone, N > 1 the mean of N real-only "
            f"classifiers trained at successive seeds."]
  if weight and (mix == "pretrain" or "real" not in conditions or
                 conditions.index("real") > conditions.index("real+synthetic")):
    return ["config.mixed.distill learns from the real-only classifier's probabilities "
            "on both kinds of images: list 'real' before 'real+synthetic' in "
            "config.conditions and use a concat or ratio mix, or set "
            "config.mixed.distill=0."]
  if mix == "pretrain":
    if threshold:
      return ["config.mixed.mix='pretrain' trains the real+synthetic classifier on the "
              "real images only (from the synthetic-only classifier's weights), so "
              "there are no synthetic images to filter: set "
              "config.mixed.min_confidence=0."]
    if "synthetic" not in conditions or (conditions.index("synthetic") >
                                         conditions.index("real+synthetic")):
      return ["config.mixed.mix='pretrain' starts the real+synthetic classifier from "
              "the synthetic-only one: list 'synthetic' before 'real+synthetic' in "
              "config.conditions."]
  if threshold and ("real" not in conditions or conditions.index("real") >
                    conditions.index("real+synthetic")):
    return ["config.mixed.min_confidence filters the synthetic images with the "
            "real-only classifier: list 'real' before 'real+synthetic' in "
            "config.conditions, or set config.mixed.min_confidence=0."]
  if mix not in MIXED:
    return [f"config.mixed.mix={mix!r} is not a way to mix real and synthetic data; "
            f"set it to one of {MIXED}."]
  if mix == "ratio" and not (0 < fraction < 1 and float(fraction * batch).is_integer()):
    return [f"config.mixed.synthetic_fraction={fraction} must be strictly between 0 "
            f"and 1 and a whole number of the batch of {batch}: use k/{batch}."]
  return []


def run_config(config, condition, real, build, synthetic_keep="", init_from="",
               teacher=None):
  """The classifier job config of one condition (real+synthetic: trained only on the
  synthetic indices in the .npy file `synthetic_keep`, if given, and starting from the
  classifier in `init_from`, if given). teacher: {role: .npy of teacher probabilities}
  of the roles it trains on, for mixed.distill's soft targets."""
  if condition not in CONDITIONS:
    raise ValueError(f"Unknown classifier condition {condition!r}; choose from "
                     f"{CONDITIONS}.")
  cfg = config.classifier.copy_and_resolve_references()
  mix = condition
  if condition == "real+synthetic":  # Checked by missing() before the run.
    mix = "real" if config.mixed.mix == "pretrain" else config.mixed.mix
    cfg.data.synthetic_fraction = config.mixed.synthetic_fraction
    cfg.init_from = init_from
  cfg.data.update(
      real=f"{real['name']}:{config.real.train_split}" if mix != "synthetic" else "",
      synthetic=f"{build['folder']}:train" if mix != "real" else "",
      eval=f"{real['name']}:{config.real.test_split}",
      mix=mix, data_dir=real["data_dir"])
  if condition == "real+synthetic":
    cfg.data.synthetic_keep = synthetic_keep
  if teacher:
    cfg.data.update(teacher_weight=config.mixed.distill,
                    teacher_temperature=config.mixed.distill_temperature,
                    **{f"{role}_teacher": teacher[role] for role in ("real", "synthetic")
                       if cfg.data[role]})
  # Fields a run does not use are left out, so that the runs recorded before they
  # existed still match their configs (and are not retrained).
  with cfg.unlocked():
    if not cfg.init_from:
      del cfg["init_from"]
    for field in [f for f in ("real_teacher", "synthetic_teacher", "teacher_temperature",
                              "teacher_weight")
                  if not (cfg.data.teacher_weight and cfg.data[f])]:
      del cfg.data[field]
  return cfg


def real_classifier_on_synthetic(config, upstream, real_workdir):
  """(trainer, variables, synthetic split, crop): the trained real-only classifier of
  `real_workdir`, set up to read the built synthetic dataset."""
  cfg = run_config(config, "real", upstream["real_data"], upstream["build"])
  data = classifier_data.make_train_data(cfg.data, cfg.batch_size, cfg.seed)
  trainer = classifier_trainer.Trainer(classifier_models.build(cfg.model), cfg, data)
  _, variables = classifier_trainer.load_classifier(real_workdir)
  synthetic = classifier_data.open_source(f"{upstream['build']['folder']}:train", "",
                                          cfg.data.cache_mb)
  return trainer, variables, synthetic, classifier_data.crops(cfg.data)[1]


def filter_synthetic(config, upstream, real_workdir, stage_dir):
  """Scores every synthetic image with the real-only classifier and writes the indices
  of those it gives probability ≥ mixed.min_confidence of their generated class to
  <stage_dir>/synthetic_keep_<p>.npy; returns (that path, a summary)."""
  threshold = config.mixed.min_confidence
  trainer, variables, synthetic, crop = real_classifier_on_synthetic(
      config, upstream, real_workdir)
  probs, labels = trainer.probabilities(variables, synthetic, crop)
  keep = np.flatnonzero(probs[np.arange(len(labels)), labels] >= threshold)
  path = os.path.join(stage_dir, synthetic_keep_file(threshold))
  with open(path + ".tmp", "wb") as f:
    np.save(f, keep)
  os.replace(path + ".tmp", path)
  summary = {"min_confidence": threshold, "kept": int(len(keep)),
             "of": int(len(labels)),
             "kept_per_class": np.bincount(labels[keep], minlength=synthetic.num_classes
                                           ).tolist(),
             "per_class": np.bincount(labels, minlength=synthetic.num_classes).tolist()}
  logging.info("synthetic filter: kept %d of %d images (real-only classifier "
               "confidence ≥ %g)", len(keep), len(labels), threshold)
  return path, summary


def write_teacher(config, upstream, real_workdirs, stage_dir):
  """The teacher's class probabilities on the real training images and on every
  synthetic image: those of the real-only classifier, or the mean over the real-only
  classifiers in `real_workdirs` (an ensemble), as <stage_dir>/teacher_{real,synthetic}
  .npy (teachers<N>_… for N of them); returns {role: path}."""
  trainer, variables, synthetic, crop = real_classifier_on_synthetic(
      config, upstream, real_workdirs[0])
  members = [variables] + [classifier_trainer.load_classifier(w)[1]
                           for w in real_workdirs[1:]]
  # The file's name says how many classifiers it averages: teachers_of() reads it back.
  prefix = "teacher" if len(members) == 1 else f"teachers{len(members)}"
  paths = {}
  for role, source in (("real", trainer.data.sources["real"]),
                       ("synthetic", synthetic)):
    probs = np.mean([trainer.probabilities(v, source, crop)[0] for v in members],
                    axis=0)
    paths[role] = os.path.join(stage_dir, f"{prefix}_{role}.npy")
    with open(paths[role] + ".tmp", "wb") as f:
      np.save(f, probs.astype(np.float32))
    os.replace(paths[role] + ".tmp", paths[role])
  logging.info("distillation: the probabilities of %d real-only classifier(s) on %d "
               "real and %d synthetic images written", len(members),
               len(trainer.data.sources["real"]), len(synthetic))
  return paths


def teachers_of(teacher_path):
  """How many real-only classifiers the targets file written by write_teacher averages
  (teacher_<role>.npy: one, teachers<N>_<role>.npy: N)."""
  ensemble = re.match(r"teachers(\d+)_", os.path.basename(teacher_path))
  return int(ensemble[1]) if ensemble else 1


def _changed_keys(old, new, prefix=""):
  """The dotted keys whose values differ between two nested dicts."""
  changed = []
  for key in sorted(set(old) | set(new)):
    a, b = old.get(key), new.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
      changed += _changed_keys(a, b, f"{prefix}{key}.")
    elif a != b:
      changed.append(f"{prefix}{key}")
  return changed


def _start_or_resume(cfg, workdir):
  """Keeps a workdir whose run trains `cfg`; one made for another config is removed
  (its checkpoints and eval.json belong to a different recipe or data)."""
  wanted = common.plain(cfg)
  path = os.path.join(workdir, RUN_CONFIG)
  if os.path.exists(path):
    with open(path) as f:
      recorded = json.load(f)
    if recorded == wanted:
      return
    logging.warning("%s: its classifier config changed (%s), training it afresh",
                    workdir, ", ".join(_changed_keys(recorded, wanted)))
    shutil.rmtree(workdir)
  elif os.path.isdir(workdir):
    shutil.rmtree(workdir)  # From before configs were recorded: unknown recipe.
  os.makedirs(workdir)
  with open(path + ".tmp", "w") as f:
    json.dump(wanted, f, indent=1, sort_keys=True)
  os.replace(path + ".tmp", path)


def train(cfg, workdir):
  """Trains (or resumes) one run; returns (its eval.json, real examples, examples an
  epoch)."""
  data = classifier_data.make_train_data(cfg.data, cfg.batch_size, cfg.seed)
  _start_or_resume(cfg, workdir)
  trainer = classifier_trainer.Trainer(classifier_models.build(cfg.model), cfg, data)
  eval_file = os.path.join(workdir, classifier_trainer.EVAL_FILE)
  if os.path.exists(eval_file):
    with open(eval_file) as f:
      done = json.load(f)
    if done.get("step") == trainer.num_steps:
      logging.info("%s: already trained and evaluated, kept", workdir)
      return done, len(data.sources.get("real", [])), data.epoch_size
  eval_source = classifier_data.open_source(cfg.data.eval, cfg.data.data_dir,
                                            cfg.data.cache_mb)
  trainer.fit(workdir, eval_source, classifier_data.crops(cfg.data)[1])
  with open(eval_file) as f:
    return json.load(f), len(data.sources.get("real", [])), data.epoch_size


DISTILLED_CONTROL = "real (distilled)"


def trained_runs(config):
  """The conditions in order, an ensemble teacher's extra real-only classifiers before
  real+synthetic, and the distillation's control at the end, if used."""
  runs = list(config.conditions)
  if config.mixed.get("distill", 0.0) and "real+synthetic" in runs:
    at = runs.index("real+synthetic")
    runs[at:at] = [_teacher_condition(s) for s in teacher_seeds(config)]
    runs.append(DISTILLED_CONTROL)
  return runs


def _workdir(stage_dir, condition, mixed):
  if condition == DISTILLED_CONTROL:
    return os.path.join(stage_dir, "real" + _distill_suffix(mixed))
  if _teacher_seed(condition) is not None:
    return os.path.join(stage_dir, f"real_seed{_teacher_seed(condition)}")
  name = condition.replace("+", "_plus_")
  if condition == "real+synthetic":
    name += "_" + mix_name(mixed)
  return os.path.join(stage_dir, name)


def classifier_progress(workdir):
  """"evaluated at step N, top-1 …", "at step N" (its latest checkpoint) or "not
  started"."""
  try:
    with open(os.path.join(workdir, classifier_trainer.EVAL_FILE)) as f:
      got = json.load(f)
    return f"evaluated at step {got['step']}, top-1 {100 * got['top1']:.2f}%"
  except (FileNotFoundError, json.JSONDecodeError, KeyError):
    pass
  steps = [int(p.name) for p in pathlib.Path(workdir, "checkpoints").glob("*")
           if p.name.isdigit()]
  return f"at step {max(steps)}" if steps else "not started"


def make(config):

  def inputs():
    return {"classifier": common.plain(config.classifier),
            "conditions": list(config.conditions),
            "mixed": common.plain(config.mixed),
            "splits": [config.real.train_split, config.real.test_split]}

  def run(stage_dir, upstream):
    results, keep, kept, teacher = {}, "", None, None
    runs = trained_runs(config)
    for i, condition in enumerate(runs):
      if condition == "real+synthetic" and config.mixed.get("min_confidence", 0.0):
        keep, kept = filter_synthetic(config, upstream, results["real"]["workdir"],
                                      stage_dir)
      if condition == "real+synthetic" and config.mixed.get("distill", 0.0):
        members = [results[c]["workdir"] for c in results
                   if c == "real" or _teacher_seed(c) is not None]
        teacher = write_teacher(config, upstream, members, stage_dir)
      init_from = ""
      if condition == "real+synthetic" and config.mixed.mix == "pretrain":
        init_from = results["synthetic"]["workdir"]
      cfg = run_config(
          config, condition if condition in CONDITIONS else "real",
          upstream["real_data"], upstream["build"], keep, init_from,
          teacher if condition in ("real+synthetic", DISTILLED_CONTROL) else None)
      if _teacher_seed(condition) is not None:  # An ensemble teacher's member.
        cfg.seed = _teacher_seed(condition)
      workdir = _workdir(stage_dir, condition, config.mixed)
      logging.info("classifier %d/%d: %s (train %s)", i + 1, len(runs),
                   condition, " + ".join(s for s in (cfg.data.real, cfg.data.synthetic)
                                         if s))
      got, num_real, num_train = train(cfg, workdir)
      synthetic = f"{upstream['build']['tfds_name']}:train"
      train_data = [cfg.data.real] if cfg.data.real else []
      if cfg.data.synthetic:
        train_data.append(synthetic)
        if cfg.data.synthetic_keep:
          train_data[-1] += (f" ({kept['kept']} of {kept['of']}: real-only classifier "
                             f"confidence ≥ {kept['min_confidence']:g})")
      if cfg.get("init_from"):
        train_data[-1] += f", starting from the synthetic-only classifier ({synthetic})"
      train_data = " + ".join(train_data)
      if cfg.data.get("teacher_weight"):
        seeds = [config.classifier.seed, *teacher_seeds(config)]
        whose = ("the real-only classifier's" if len(seeds) == 1 else
                 f"the mean of {len(seeds)} real-only classifiers' (seeds "
                 f"{', '.join(map(str, seeds))})")
        train_data += (f"; targets {1 - cfg.data.teacher_weight:g} × label + "
                       f"{cfg.data.teacher_weight:g} × {whose} "
                       f"probabilities at temperature {cfg.data.teacher_temperature:g}")
      results[condition] = {
          "workdir": workdir, "train_data": train_data,
          "num_train": int(num_train), "num_real": int(num_real),
          "steps": got["step"], "top1": got["top1"], "top5": got["top5"],
          "per_class": list(got["per_class"].values()),
          "class_names": list(got["per_class"])}
      if cfg.data.synthetic_keep:
        results[condition]["synthetic_filter"] = kept
    return results

  def progress(stage_dir):
    return "; ".join(f"{c}: {classifier_progress(_workdir(stage_dir, c, config.mixed))}"
                     for c in trained_runs(config))

  return runner.Stage("classifiers", run, inputs, progress)
