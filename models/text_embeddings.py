"""Per-class text embeddings: the paper's class-name prompts, as a lookup table.

The text encoder is frozen in the paper, so its output for each class prompt is
computed once (outside this repo) and stored as a `.npy` array; the U-Net
cross-attends to row `label`. Row `num_classes` (the null label of classifier-free
guidance) is all zeros: the unconditional branch sees no prompt.

The prompts are the CLIP-style class names (for ImageNet
`synthfactory.datasets.class_plan.imagenet2012_names()`); `class_prompts` gives the
strings to feed the text encoder when exporting the `.npy`.
"""
import numpy as np

# The paper's prompt is the CLIP-style class name (DESIGN §5); a template such as
# "a photo of a {}." can wrap it for encoders trained on captions.
DEFAULT_TEMPLATE = "{}"


def class_prompts(class_names, template=DEFAULT_TEMPLATE):
  """One prompt per class, in label order (row `label` of the text table)."""
  return [template.format(name) for name in class_names]


def make_text_table(embeddings, num_classes):
  """(num_classes, L, D) or (num_classes, D) → float32 (num_classes + 1, L, D)."""
  emb = np.asarray(embeddings)
  if emb.ndim == 2:
    emb = emb[:, None, :]
  if emb.ndim != 3 or emb.shape[0] != num_classes or 0 in emb.shape:
    raise ValueError(
        f"Text embeddings must be shaped ({num_classes}, L, D) or ({num_classes}, D) "
        f"(one prompt per class, L tokens of width D), got {np.shape(embeddings)}; "
        "re-export them with one row per class in label order.")
  if not np.issubdtype(emb.dtype, np.floating):
    raise ValueError(f"Text embeddings must be floating point, got dtype {emb.dtype}.")
  null = np.zeros((1,) + emb.shape[1:], np.float32)
  return np.concatenate([emb.astype(np.float32), null], axis=0)


def load_text_table(path, num_classes):
  """Reads a `.npy` of per-class embeddings (never unpickles) into a text table."""
  with open(path, "rb") as f:
    emb = np.load(f, allow_pickle=False)
  return make_text_table(emb, num_classes)
