"""Per-class text embeddings: the paper's class-name prompts, as a lookup table.

The text encoder is frozen in the paper, so its output for each class prompt is
computed once (outside this repo) and stored as a `.npy` array; the U-Net
cross-attends to row `label`. Row `num_classes` (the null label of classifier-free
guidance) is all zeros: the unconditional branch sees no prompt.
"""
import numpy as np


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
