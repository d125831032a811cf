"""The FID Inception: structure, torch-layout weight conversion, loading, resizing."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthfactory.evaluation import convert_inception_weights as convert
from synthfactory.evaluation import inception

# torchvision's inception_v3 without aux head has 23,834,568 parameters at 1000
# classes; the FID network's 1008-way fc adds 8 · (2048 + 1).
FID_INCEPTION_PARAMETERS = 23_834_568 + 8 * 2049


def _torch_state_shapes():
  """The state dict of pytorch-fid's FID Inception, written out independently of our
  module from torchvision's block definitions: {torch name: shape}."""
  shapes = {}

  def conv(name, cin, cout, k):
    kh, kw = (k, k) if isinstance(k, int) else k
    shapes[f"{name}.conv.weight"] = (cout, cin, kh, kw)
    for p in ("weight", "bias", "running_mean", "running_var"):
      shapes[f"{name}.bn.{p}"] = (cout,)
    shapes[f"{name}.bn.num_batches_tracked"] = ()

  for name, cin, cout, k in (("Conv2d_1a_3x3", 3, 32, 3), ("Conv2d_2a_3x3", 32, 32, 3),
                             ("Conv2d_2b_3x3", 32, 64, 3), ("Conv2d_3b_1x1", 64, 80, 1),
                             ("Conv2d_4a_3x3", 80, 192, 3)):
    conv(name, cin, cout, k)
  for m, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
    for b, i, o, k in (("branch1x1", cin, 64, 1), ("branch5x5_1", cin, 48, 1),
                       ("branch5x5_2", 48, 64, 5), ("branch3x3dbl_1", cin, 64, 1),
                       ("branch3x3dbl_2", 64, 96, 3), ("branch3x3dbl_3", 96, 96, 3),
                       ("branch_pool", cin, pool, 1)):
      conv(f"{m}.{b}", i, o, k)
  for b, i, o, k in (("branch3x3", 288, 384, 3), ("branch3x3dbl_1", 288, 64, 1),
                     ("branch3x3dbl_2", 64, 96, 3), ("branch3x3dbl_3", 96, 96, 3)):
    conv(f"Mixed_6a.{b}", i, o, k)
  for m, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
    for b, i, o, k in (("branch1x1", 768, 192, 1), ("branch7x7_1", 768, c7, 1),
                       ("branch7x7_2", c7, c7, (1, 7)), ("branch7x7_3", c7, 192, (7, 1)),
                       ("branch7x7dbl_1", 768, c7, 1), ("branch7x7dbl_2", c7, c7, (7, 1)),
                       ("branch7x7dbl_3", c7, c7, (1, 7)), ("branch7x7dbl_4", c7, c7, (7, 1)),
                       ("branch7x7dbl_5", c7, 192, (1, 7)), ("branch_pool", 768, 192, 1)):
      conv(f"{m}.{b}", i, o, k)
  for b, i, o, k in (("branch3x3_1", 768, 192, 1), ("branch3x3_2", 192, 320, 3),
                     ("branch7x7x3_1", 768, 192, 1), ("branch7x7x3_2", 192, 192, (1, 7)),
                     ("branch7x7x3_3", 192, 192, (7, 1)), ("branch7x7x3_4", 192, 192, 3)):
    conv(f"Mixed_7a.{b}", i, o, k)
  for m, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
    for b, i, o, k in (("branch1x1", cin, 320, 1), ("branch3x3_1", cin, 384, 1),
                       ("branch3x3_2a", 384, 384, (1, 3)), ("branch3x3_2b", 384, 384, (3, 1)),
                       ("branch3x3dbl_1", cin, 448, 1), ("branch3x3dbl_2", 448, 384, 3),
                       ("branch3x3dbl_3a", 384, 384, (1, 3)),
                       ("branch3x3dbl_3b", 384, 384, (3, 1)), ("branch_pool", cin, 192, 1)):
      conv(f"{m}.{b}", i, o, k)
  shapes["fc.weight"], shapes["fc.bias"] = (1008, 2048), (1008,)
  return shapes


def _fake_state(seed=0):
  """Random weights of the right names and shapes, scaled to keep activations sane."""
  rng = np.random.default_rng(seed)
  state = {}
  for name, shape in _torch_state_shapes().items():
    if name.endswith("num_batches_tracked"):
      state[name] = np.array(7, np.int64)
    elif name.endswith("running_var") or name.endswith("bn.weight"):
      state[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
    elif name.endswith("conv.weight") or name == "fc.weight":
      fan_in = int(np.prod(shape[1:]))
      state[name] = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
    else:
      state[name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
  return state


@pytest.fixture(scope="module")
def fake_state():
  return _fake_state()


@pytest.fixture(scope="module")
def weights_file(fake_state, tmp_path_factory):
  """The fake state dict exported to .npz (as one would where torch is installed),
  then converted to our weight file."""
  exported = tmp_path_factory.mktemp("w") / "pt_inception_state.npz"
  np.savez(exported, **fake_state)
  out = exported.with_name("inception_fid.npz")
  convert.convert(str(exported), str(out))
  return out


def test_parameter_count_matches_the_fid_inception():
  shapes = inception.expected_shapes()
  params = sum(int(np.prod(s)) for k, s in shapes.items() if k.startswith("params/"))
  assert params == FID_INCEPTION_PARAMETERS == 23_850_960
  torch_params = sum(int(np.prod(s)) for k, s in _torch_state_shapes().items()
                     if not k.endswith(("running_mean", "running_var", "tracked")))
  assert torch_params == params
  assert sum(k.endswith("conv/kernel") for k in shapes) == 94


def test_convert_load_and_forward(weights_file):
  variables, meta = inception.load_variables(weights_file)
  assert meta["reference_fid_weights"] is False and meta["source"].endswith(".npz")
  extractor = inception.make_extractor(weights_file, batch_size=2)
  assert extractor.metric_name == "FD-inception" and not extractor.is_fid_network
  images = np.random.default_rng(1).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
  out = extractor(images)
  assert out["features"].shape == (2, 2048) and out["logits"].shape == (2, 1008)
  assert np.isfinite(out["features"]).all() and out["features"].std() > 0
  # One image alone gives the same features as in a batch (padding is invisible).
  np.testing.assert_allclose(extractor(images[1:])["features"][0], out["features"][1],
                             rtol=1e-4, atol=1e-5)
  assert extractor.identity == inception.weights_identity(variables)


def test_declared_reference_weights_are_called_fid(fake_state, tmp_path):
  exported = tmp_path / "state.npz"
  np.savez(exported, **fake_state)
  meta = convert.convert(str(exported), str(tmp_path / "w.npz"),
                         reference_fid_weights=True)
  assert meta["reference_fid_weights"] and "declared" in meta["reference_reason"]
  assert inception.load_variables(tmp_path / "w.npz")[1] == meta


def test_converted_conv_and_fc_compute_what_torch_computes(fake_state):
  """Numerics of the renaming: a square 32→32 kernel (where a wrong transpose keeps
  the shape) and the fc, against numpy in torch's NCHW layout."""
  variables = inception.unflatten(convert.convert_state_dict(fake_state))
  x = np.random.default_rng(2).standard_normal((1, 6, 5, 32)).astype(np.float32)
  sub = {c: variables[c]["Conv2d_2a_3x3"] for c in ("params", "batch_stats")}
  got = inception.BasicConv2d(32, (3, 3)).apply(sub, x)
  w = fake_state["Conv2d_2a_3x3.conv.weight"]  # (out, in, kh, kw)
  xc = x[0].transpose(2, 0, 1)  # CHW
  y = np.zeros((32, 4, 3))
  for u in range(3):
    for v in range(3):
      y += np.einsum("oc,chw->ohw", w[:, :, u, v], xc[:, u:u + 4, v:v + 3])
  bn = {p: fake_state[f"Conv2d_2a_3x3.bn.{p}"][:, None, None]
        for p in ("weight", "bias", "running_mean", "running_var")}
  y = (y - bn["running_mean"]) / np.sqrt(bn["running_var"] + 1e-3) * bn["weight"]
  want = np.maximum(y + bn["bias"], 0).transpose(1, 2, 0)[None]
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  pool = np.random.default_rng(3).standard_normal((2, 2048)).astype(np.float32)
  logits, unbiased = inception.Logits(1008).apply({"params": variables["params"]["fc"]},
                                                  pool)
  np.testing.assert_allclose(unbiased, pool @ fake_state["fc.weight"].T, rtol=1e-4,
                             atol=1e-4)
  np.testing.assert_allclose(logits, unbiased + fake_state["fc.bias"], rtol=1e-5,
                             atol=1e-5)


def test_wrong_shape_names_parameter_and_both_shapes(fake_state, tmp_path):
  state = dict(fake_state)
  state["Mixed_6b.branch7x7_2.conv.weight"] = np.zeros((128, 128, 7, 1), np.float32)
  with pytest.raises(inception.WeightFileError,
                     match=r"Mixed_6b\.branch7x7_2\.conv\.weight.*\(128, 128, 7, 1\)"
                           r".*\(128, 128, 1, 7\)"):
    convert.convert_state_dict(state)
  # The same check on our own files, in our names.
  flat = convert.convert_state_dict(fake_state)
  flat["params/fc/bias"] = np.zeros(1000, np.float32)
  inception.save_variables(tmp_path / "bad.npz", flat, {})
  with pytest.raises(inception.WeightFileError,
                     match=r"params/fc/bias has shape \(1000,\).*needs \(1008,\)"):
    inception.load_variables(tmp_path / "bad.npz")


def test_missing_and_unexpected_names(fake_state):
  state = {k: v for k, v in fake_state.items() if not k.startswith("Mixed_7c.branch_pool")}
  with pytest.raises(inception.WeightFileError, match="missing .*Mixed_7c/branch_pool"):
    convert.convert_state_dict(state)
  with pytest.raises(inception.WeightFileError, match="Unexpected parameter 'blocks"):
    convert.convert_state_dict({**fake_state, "blocks.0.0.weight": np.zeros(1)})
  # torchvision's aux head and BN counters are not part of the FID network: ignored.
  convert.convert_state_dict({**fake_state, "AuxLogits.fc.weight": np.zeros((1008, 768))})


def test_pickled_and_missing_files_are_refused(tmp_path):
  np.savez(tmp_path / "pickled.npz", a=np.array([{"x": 1}], dtype=object))
  with pytest.raises(inception.WeightFileError, match="plain arrays"):
    inception.load_variables(tmp_path / "pickled.npz")
  with pytest.raises(inception.WeightFileError, match="plain arrays"):
    convert.read_state_dict(tmp_path / "pickled.npz")
  with pytest.raises(inception.WeightFileError, match="No Inception weight file"):
    inception.load_variables(tmp_path / "absent.npz")


def test_pth_needs_torch(tmp_path):
  try:
    import torch  # noqa: F401
    pytest.skip("torch is installed")
  except ImportError:
    pass
  (tmp_path / "w.pth").write_bytes(b"not read")
  with pytest.raises(inception.WeightFileError, match="needs PyTorch.*npz"):
    convert.read_state_dict(tmp_path / "w.pth")


def _torch_bilinear(x, size):
  """torch.nn.functional.interpolate(bilinear, align_corners=False) of (H, W), by
  gathering, with torch's float32 source positions."""
  def taps(n_in):
    src = np.maximum(np.float32(n_in) / np.float32(size)
                     * (np.arange(size, dtype=np.float32) + np.float32(0.5))
                     - np.float32(0.5), 0)
    i0 = np.minimum(src.astype(int), n_in - 1)
    return i0, np.where(i0 < n_in - 1, i0 + 1, i0), (src - i0)
  (h0, h1, hl), (w0, w1, wl) = taps(x.shape[0]), taps(x.shape[1])
  row = lambda h: x[h][:, w0] * (1 - wl) + x[h][:, w1] * wl
  return row(h0) * (1 - hl[:, None]) + row(h1) * hl[:, None]


@pytest.mark.parametrize("h, w", [(28, 28), (32, 20), (299, 299), (512, 300)])
def test_resize_matches_torch_bilinear(h, w):
  x = np.random.default_rng(h).uniform(-1, 1, (h, w)).astype(np.float32)
  got = np.asarray(inception.resize_bilinear(jnp.asarray(x)[None, :, :, None], 299))
  np.testing.assert_allclose(got[0, :, :, 0], _torch_bilinear(x.astype(np.float64), 299),
                             atol=2e-6)
  # And the same sampling as JAX's own non-antialiased bilinear (up to float rounding).
  ref = jax.image.resize(x, (299, 299), "linear", antialias=False)
  np.testing.assert_allclose(got[0, :, :, 0], ref, atol=3e-4)


def test_resize_small_cases():
  up = inception.resize_bilinear(jnp.array([0.0, 1.0]).reshape(1, 1, 2, 1), 4)
  np.testing.assert_allclose(up[0, 0, :, 0], [0, 0.25, 0.75, 1], atol=1e-7)
  # 5 → 2: sources at 0.75 and 3.25, no antialiasing.
  down = inception.resize_bilinear(jnp.arange(5.0).reshape(1, 1, 5, 1), 2)
  np.testing.assert_allclose(down[0, 0, :, 0], [0.75, 3.25], atol=1e-6)
