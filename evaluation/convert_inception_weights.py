r"""Converts the PyTorch FID Inception weights into our .npz weight file.

  python -m synthfactory.evaluation.convert_inception_weights \
      --torch_state=pt_inception-2015-12-05-6726825d.pth --out=inception_fid.npz

The input is the state dict pytorch-fid distributes (TF's inception-2015-12-05 graph,
ported): a .pth read with torch.load(weights_only=True) (torch is needed only for this),
or an .npz of the same named arrays exported where torch is installed:

  python -c "import numpy as np, torch; sd = torch.load('pt_inception-2015-12-05-6726825d.pth', weights_only=True); np.savez('pt_inception_state.npz', **{k: v.numpy() for k, v in sd.items()})"

The metric is reported as "FID" only with the reference weights. The .pth's name carries
the first hex digits of its SHA-256 (torch.hub's convention), which the converter checks;
an .npz export cannot be checked, so declare it with --reference_fid_weights.
"""
import hashlib
import pathlib
import re
import sys

from absl import app
from absl import flags
import numpy as np

from synthfactory.evaluation import inception

REFERENCE_FILE = "pt_inception-2015-12-05-6726825d.pth"
REFERENCE_SHA256_PREFIX = "6726825d"

# Not part of the FID network: BN step counters, and torchvision's aux head.
_IGNORED = re.compile(r"(\.num_batches_tracked$|^AuxLogits\.)")
_RENAMES = (  # (torch suffix, collection, our leaf, transpose from torch's layout)
    (".conv.weight", "params", "conv/kernel", (2, 3, 1, 0)),  # OIHW → HWIO
    (".bn.weight", "params", "bn/scale", None),
    (".bn.bias", "params", "bn/bias", None),
    (".bn.running_mean", "batch_stats", "bn/mean", None),
    (".bn.running_var", "batch_stats", "bn/var", None),
)
_FC = {"fc.weight": ("params/fc/kernel", (1, 0)), "fc.bias": ("params/fc/bias", None)}

_TORCH_STATE = flags.DEFINE_string("torch_state", None, "pytorch-fid's .pth state dict, "
                                   "or an .npz export of it.")
_OUT = flags.DEFINE_string("out", None, "Where to write our weight file (.npz).")
_REFERENCE = flags.DEFINE_bool("reference_fid_weights", False, "Declare that the input "
                               f"holds the reference FID weights ({REFERENCE_FILE}); "
                               "needed for an .npz export, whose hash cannot be checked.")


def rename(torch_name):
  """Torch state-dict name → (our flat name, transpose), or None for ignored names."""
  if _IGNORED.search(torch_name):
    return None
  if torch_name in _FC:
    return _FC[torch_name]
  for suffix, collection, leaf, transpose in _RENAMES:
    if torch_name.endswith(suffix):
      module = torch_name[:-len(suffix)].replace(".", "/")
      return f"{collection}/{module}/{leaf}", transpose
  raise inception.WeightFileError(
      f"Unexpected parameter {torch_name!r} in the state dict: this is not pytorch-fid's "
      f"FID Inception ({REFERENCE_FILE}).")


def convert_state_dict(state_dict):
  """{torch name: array} → our flat {name: float32 array}, checked against the network.
  A wrong shape is reported in torch's own names and layout."""
  expected = inception.expected_shapes()
  flat = {}
  for torch_name, value in state_dict.items():
    renamed = rename(torch_name)
    if renamed is None:
      continue
    name, transpose = renamed
    value = np.asarray(value)
    if name in expected:
      want = expected[name]
      want_torch = tuple(want[i] for i in np.argsort(transpose)) if transpose else want
      if value.shape != want_torch:
        raise inception.WeightFileError(
            f"Parameter {torch_name} has shape {value.shape} in the state dict, but the "
            f"FID Inception needs {want_torch} (our {name}: {want}).")
    flat[name] = np.asarray(value.transpose(transpose) if transpose else value,
                            np.float32)
  inception.check_shapes(flat, expected)
  return flat


def read_state_dict(path):
  """{name: numpy array} from an .npz (never unpickled) or a torch .pth."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise inception.WeightFileError(f"No state dict at {path}.")
  if path.suffix == ".npz":
    try:
      with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}
    except ValueError as e:
      raise inception.WeightFileError(f"Cannot read {path} as an .npz of plain arrays "
                                      f"(pickled data is refused): {e}") from e
  try:
    import torch  # Optional: only this path needs it.
  except ImportError as e:
    raise inception.WeightFileError(
        f"Reading {path} needs PyTorch, which is not installed. Install it, or export "
        f"the state dict to .npz where torch is available (see this module's "
        f"docstring) and pass that.") from e
  state = torch.load(path, map_location="cpu", weights_only=True)
  return {k: v.numpy() for k, v in state.items()}


def sha256_of(path):
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def convert(torch_state, out, reference_fid_weights=False):
  """Writes our weight file `out` from `torch_state`; returns its metadata."""
  flat = convert_state_dict(read_state_dict(torch_state))
  digest = sha256_of(torch_state)
  if digest.startswith(REFERENCE_SHA256_PREFIX):
    reference, why = True, f"source SHA-256 starts with {REFERENCE_SHA256_PREFIX}"
  elif reference_fid_weights:
    reference, why = True, "declared with --reference_fid_weights"
  else:
    reference, why = False, (f"source SHA-256 does not start with "
                             f"{REFERENCE_SHA256_PREFIX}: metrics say FD-inception")
  meta = {"source": pathlib.Path(torch_state).name, "source_sha256": digest,
          "reference_fid_weights": reference, "reference_reason": why,
          "format": "synthfactory FID Inception-v3 v1"}
  inception.save_variables(out, flat, meta)
  return meta


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    meta = convert(_TORCH_STATE.value, _OUT.value, _REFERENCE.value)
  except inception.WeightFileError as e:
    sys.exit(f"convert_inception_weights: {e}")
  print(f"Wrote {_OUT.value}: reference FID weights: {meta['reference_fid_weights']} "
        f"({meta['reference_reason']}).")


if __name__ == "__main__":
  flags.mark_flags_as_required(["torch_state", "out"])
  app.run(main)
