"""Throughput of the `fashion` U-Net: bare forward, inside a compiled sampler, vs peak.

Run: `python benchmarks/sampler_bench.py` (writes benchmarks/results/sampler_bench.json).

At batch BATCH: (a) image-evaluations/s of the jitted forward; (b) the jitted sampler's
images/s × steps, and its ratio to (a) (what the sampler's loop costs beyond the
network); (c) the forward's FLOPs per image (XLA cost analysis) × (a), as a fraction
of the GFLOP/s of a large 3×3 convolution timed in the same run. Plus the forward's
throughput at other batch sizes. Each repetition times (peak, forward, sampler) back
to back; the report gives medians (and best times, which other processes on a shared
machine can only lengthen) and the load average, to judge how quiet the machine was.
"""
import json
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from synthfactory.models import diffusion_model
from synthfactory.models import samplers
from synthfactory.models import unet
from synthfactory.pipelines import machine

VARIANT = "fashion"
BATCH = 32   # The fastest in the batch sweep below (16-32 fit the caches best).
SWEEP_BATCHES = (16, 32, 64, 128)
SAMPLER = samplers.SamplerConfig(name="ddim", steps=20, guidance=1.0)
PEAK_CONV = (64, 56, 56, 128, 128)   # batch, height, width, in, out; 3×3, SAME
REPS = 5
OUT = pathlib.Path(__file__).parent / "results" / "sampler_bench.json"


def _timed(fn, *args):
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - start


def _flops(compiled):
  cost = compiled.cost_analysis()
  return float((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])


def _peak_conv():
  b, h, w, cin, cout = PEAK_CONV
  x = jnp.ones((b, h, w, cin))
  k = jnp.full((3, 3, cin, cout), 0.01)
  conv = lambda x, k: jax.lax.conv_general_dilated(
      x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return jax.jit(conv).lower(x, k).compile(), (x, k), 2.0 * b * h * w * 9 * cin * cout


def _random_weights(params):
  """Off the zero init (whose zeros a kernel might skip), like a trained model."""
  rng = np.random.default_rng(1)
  return jax.tree_util.tree_map(
      lambda a: a + 0.05 * rng.normal(size=a.shape).astype(np.float32), params)


def _inputs(model, batch):
  x = jax.random.normal(jax.random.PRNGKey(2), (batch,) + model.image_shape)
  t = jnp.arange(batch, dtype=jnp.int32) * 15 % model.schedule.num_steps
  labels = jnp.arange(batch, dtype=jnp.int32) % model.num_classes
  return x, t, labels


def _batch_sweep(model, params):
  rows = {}
  for batch in SWEEP_BATCHES:
    args = (params,) + _inputs(model, batch)
    forward = jax.jit(model.apply).lower(*args).compile()
    _timed(forward, *args)
    times = [_timed(forward, *args) for _ in range(REPS)]
    rows[str(batch)] = {"median": round(batch / np.median(times), 1),
                        "best": round(batch / min(times), 1)}
  return rows


def main():
  load_start = os.getloadavg()[0]
  model = diffusion_model.DiffusionModel.from_config(unet.unet_config(VARIANT))
  params = _random_weights(model.init(jax.random.PRNGKey(0)))
  x, t, labels = _inputs(model, BATCH)
  keys = jax.random.split(jax.random.PRNGKey(3), BATCH)

  start = time.perf_counter()
  forward = jax.jit(model.apply).lower(params, x, t, labels).compile()
  compile_forward_s = time.perf_counter() - start
  flops_per_image = _flops(forward) / BATCH
  start = time.perf_counter()
  sampler = samplers.make_sampler(model.apply, model.schedule, SAMPLER,
                                  model.image_shape, prediction=model.prediction,
                                  num_classes=model.num_classes)
  jax.block_until_ready(sampler(params, keys, labels))
  compile_sampler_s = time.perf_counter() - start
  peak, peak_args, peak_flops = _peak_conv()
  for fn, args in ((forward, (params, x, t, labels)), (peak, peak_args)):
    _timed(fn, *args)  # Warm-up.

  rows = np.array([(_timed(peak, *peak_args), _timed(forward, params, x, t, labels),
                    _timed(sampler, params, keys, labels)) for _ in range(REPS)])
  sweep = _batch_sweep(model, params)

  def summary(peak_s, forward_s, sampler_s):
    forward_ips = BATCH / forward_s
    sampler_evals = BATCH * SAMPLER.steps / sampler_s
    peak_gflops = peak_flops / peak_s / 1e9
    model_gflops = flops_per_image * forward_ips / 1e9
    return {"forward_image_evals_per_s": round(forward_ips, 1),
            "sampler_images_per_s": round(BATCH / sampler_s, 2),
            "sampler_image_evals_per_s": round(sampler_evals, 1),
            "sampler_ratio_to_forward": round(sampler_evals / forward_ips, 3),
            "forward_gflop_per_s": round(model_gflops, 1),
            "peak_conv_gflop_per_s": round(peak_gflops, 1),
            "utilisation": round(model_gflops / peak_gflops, 3)}

  result = {
      "machine": {
          **machine.describe(), "jax_version": jax.__version__,
          "device": str(jax.devices()[0]), "device_kind": jax.devices()[0].device_kind,
          "load_average_1m": {"start": round(load_start, 2),
                              "end": round(os.getloadavg()[0], 2)},
      },
      "model": {"variant": VARIANT, "image_shape": list(model.image_shape),
                "params": diffusion_model.param_count(params), "batch": BATCH,
                "forward_mflop_per_image": round(flops_per_image / 1e6, 1)},
      "sampler_config": SAMPLER.to_dict(),
      "peak_conv_nhwc_in_out_3x3": list(PEAK_CONV),
      "compile_s": {"forward": round(compile_forward_s, 2),
                    "sampler_incl_first_run": round(compile_sampler_s, 2)},
      "median": summary(*np.median(rows, axis=0)),
      "best": summary(*rows.min(axis=0)),
      "forward_image_evals_per_s_by_batch": sweep,
      "repetitions": REPS,
      "seconds_peak_forward_sampler": np.round(rows, 4).tolist(),
  }
  OUT.parent.mkdir(parents=True, exist_ok=True)
  OUT.write_text(json.dumps(result, indent=1) + "\n")
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
