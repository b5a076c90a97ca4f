"""Every trained head, in one home (importing this registers the pooled ones):

- :mod:`~mmadapt.heads.pooled`: encoder output tokens → class logits / regression values (the heads of
  ``adapted_encoder``), registered as ``classification`` / ``regression``;
- :mod:`~mmadapt.heads.dense`: per-task decoders over a hierarchical encoder's stage features and each dense
  task kind's loss (``dense_multitask``);
- :mod:`~mmadapt.heads.video_text`: All-in-One's classifier and its authors' initialisation (``all_in_one``).

Text outputs come from the frozen LM's own output embedding (:class:`~mmadapt.models.PerceptualLM`).
"""

from mmadapt.heads.pooled import ClassificationHead, PooledHead, RegressionHead

__all__ = ["ClassificationHead", "PooledHead", "RegressionHead"]
