"""procalign.eval: the metrics of procedure-aware video alignment, defined once and named.

Pure functions over numpy arrays or torch tensors (no logging, no global state), grouped by task:

========================  =========================================================================
module                    metrics
========================  =========================================================================
``verification``          :func:`verification_auc`, :func:`verification_eer`,
                          :func:`wrong_distance_ratio` (SVIP / CPA / WeakSVR)
``alignment``             :func:`kendalls_tau`, :func:`mean_kendalls_tau`,
                          :func:`cycle_consistency`, :func:`dtw_alignment_accuracy`
``retrieval``             :func:`average_precision_at_k` (CARL cross-video, LAV within-video)
``probes``                :func:`phase_classification` (SVM / logistic at label fractions),
                          :func:`phase_progression`, :func:`progress_targets`
``keystep``               :func:`keystep_scores` (per-task Hungarian matching, frame counts),
                          :func:`task_accuracy`
``quality``               :func:`spearman_rho`, :func:`relative_l2`, :func:`aiou`,
                          :func:`segment_ious` (FineDiving / TSA)
``matching``              :func:`text_video_matching`, :func:`matching_topk`,
                          :func:`matching_auc` (CSV-Matching)
``meters``                mergeable accumulators: :class:`VerificationMeter`,
                          :class:`KeystepMeter`, :class:`QualityMeter`, :class:`MatchingMeter`,
                          :class:`MeanMeter`, :func:`all_gather`
========================  =========================================================================

Where the field's definitions differ (TCC / LAV / CARL), the function takes a ``variant`` and its
docstring says exactly what each variant computes. Shapes use B (batch / videos), T (frames),
K (steps), D (features), N and M (the two sequences of a pair).
"""

from procalign.eval.alignment import (
    KENDALLS_TAU_VARIANTS,
    cycle_consistency,
    dtw_alignment_accuracy,
    kendalls_tau,
    mean_kendalls_tau,
)
from procalign.eval.keystep import keystep_scores, task_accuracy
from procalign.eval.matching import matching_auc, matching_topk, text_video_matching
from procalign.eval.meters import (
    KeystepMeter,
    MatchingMeter,
    MeanMeter,
    Meter,
    QualityMeter,
    VerificationMeter,
    all_gather,
)
from procalign.eval.probes import (
    CLASSIFIERS,
    DEFAULT_FRACTIONS,
    phase_classification,
    phase_progression,
    progress_targets,
)
from procalign.eval.quality import AIOU_VARIANTS, aiou, relative_l2, segment_ious, spearman_rho
from procalign.eval.retrieval import AP_VARIANTS, average_precision_at_k
from procalign.eval.verification import (
    step_edit_distance,
    verification_auc,
    verification_eer,
    wrong_distance_ratio,
)

__all__ = [
    "AIOU_VARIANTS",
    "AP_VARIANTS",
    "CLASSIFIERS",
    "DEFAULT_FRACTIONS",
    "KENDALLS_TAU_VARIANTS",
    "KeystepMeter",
    "MatchingMeter",
    "MeanMeter",
    "Meter",
    "QualityMeter",
    "VerificationMeter",
    "aiou",
    "all_gather",
    "average_precision_at_k",
    "cycle_consistency",
    "dtw_alignment_accuracy",
    "kendalls_tau",
    "keystep_scores",
    "matching_auc",
    "matching_topk",
    "mean_kendalls_tau",
    "phase_classification",
    "phase_progression",
    "progress_targets",
    "relative_l2",
    "segment_ious",
    "spearman_rho",
    "step_edit_distance",
    "task_accuracy",
    "text_video_matching",
    "verification_auc",
    "verification_eer",
    "wrong_distance_ratio",
]
