"""Losses of the procalign methods, as plain functions built only on :mod:`procalign.dp` and torch.

* :mod:`procalign.losses.cpa` - CPA: relational matrix, step mining (L_step), frame-to-step
  alignment distance (L_align, Eq. 6-10).
* :mod:`procalign.losses.lrprop` - LRProp: L_same, L_prop, soft-DTW divergence / LAV IDM (Eq. 2-12).
"""

from procalign.losses import cpa, lrprop
from procalign.losses.cpa import align_loss, alignment_distance, mine_steps, relational_matrix, step_loss
from procalign.losses.lrprop import LRPropLoss, propagation_loss, same_video_loss, sdtw_loss

__all__ = [
    "LRPropLoss",
    "align_loss",
    "alignment_distance",
    "cpa",
    "lrprop",
    "mine_steps",
    "propagation_loss",
    "relational_matrix",
    "same_video_loss",
    "sdtw_loss",
    "step_loss",
]
