"""The workflow's `generate` stage around the Beam job: a changed stage replaces its
stale dataset; sampler options at defaults keep the stage's identity."""
import json
import os

import ml_collections

from synthfactory.beam_jobs.configs import generate as generate_configs
from synthfactory.datasets import manifest as manifest_lib
from synthfactory.pipelines.stages import generate as generate_stage

_IN_MEMORY = "--runner=DirectRunner --direct_running_mode=in_memory"


def _config():
  return ml_collections.ConfigDict(dict(generate=generate_configs.get_config("ci"),
                                        beam_args=_IN_MEMORY))


def test_changed_sampler_replaces_the_stale_dataset(tmp_path):
  """A rerun with other inputs (the runner reruns the stage) regenerates in place: the
  stage folder is the workflow's own, so its old dataset is replaced, not refused."""
  config, upstream = _config(), {"diffusion": {"checkpoint": ""}}
  first = generate_stage.make(config).run(str(tmp_path), upstream)
  config.generate.sampler.update(guidance=2.0, guidance_interval=(0.3, 25.0))
  second = generate_stage.make(config).run(str(tmp_path), upstream)
  assert "guidance_interval" not in first["sampler"]
  assert second["sampler"]["guidance_interval"] == [0.3, 25.0]
  assert second["manifest_sha256"] != first["manifest_sha256"]
  dataset = second["dataset_dir"]
  assert manifest_lib.problems(dataset) == []
  spec = json.loads(open(os.path.join(dataset, manifest_lib.SPEC_FILE)).read())
  assert spec["sampler"]["guidance"] == 2.0


def test_sampler_options_at_defaults_leave_the_stage_identity_alone():
  config = _config()
  config.generate.sampler.guidance = 2.0
  before = generate_stage.make(config).inputs()
  assert "guidance_interval" not in before["generate"]["sampler"]
  config.generate.sampler.guidance_interval = (0.3, 25.0)
  after = generate_stage.make(config).inputs()
  assert after["generate"]["sampler"]["guidance_interval"] == [0.3, 25.0]
