"""Per-frame inputs made from body joints, and phase labels made from step positions.

* :func:`normalize_joints` - translation- and scale-normalised 2-D joints (Penn Action's 13
  joints; the same centring and scaling fits any skeleton given its hip and shoulder indices).
* :func:`event_phases` - ordered phase labels (TCC's key-event phases) from per-frame step
  positions of the synthetic generator.
"""

from __future__ import annotations

import numpy as np

#: Penn Action joint order (0-based): head, L/R shoulder, L/R elbow, L/R wrist, L/R hip, L/R knee,
#: L/R ankle.
PENN_SHOULDERS = (1, 2)
PENN_HIPS = (7, 8)
JOINT_NORMS = ("hips", "bbox", "video")


def event_phases(phases: np.ndarray) -> np.ndarray:
    """Synthetic ground truth -> ordered phase labels: the number of steps started so far.

    ``phases`` (T,) is the step position (``-1`` on background). Background before the first
    step is phase 0; step k and any background after it (up to the next step) is phase k + 1.
    With K steps the labels are 0..K, ordered in time, as TCC's key-event phases.

    >>> event_phases(np.array([-1, 0, 0, -1, 1, 1, -1])).tolist()
    [0, 1, 1, 1, 2, 2, 2]
    """
    p = np.asarray(phases, dtype=np.int64)
    if p.ndim != 1:
        raise ValueError(f"phases must be (T,), got shape {p.shape}")
    return np.maximum.accumulate(p + 1)


def normalize_joints(
    joints: np.ndarray,
    mode: str = "hips",
    bbox: np.ndarray | None = None,
    hips: tuple[int, int] = PENN_HIPS,
    shoulders: tuple[int, int] = PENN_SHOULDERS,
) -> np.ndarray:
    """Translation- and scale-normalised 2-D joints (T, J, 2) -> (T, J, 2) float32.

    Modes:
        ``"hips"``: per frame, subtract the mid-hip; divide by the video's median torso length
        (mid-shoulder to mid-hip distance), robust to a few bad frames.
        ``"bbox"``: per frame, subtract the box centre and divide by the box height (``bbox``
        (T', 4) ``x1 y1 x2 y2``; a missing last row repeats the previous one).
        ``"video"``: one centre (mean mid-hip) and one scale (median torso) for the whole video,
        so global motion (jumps, walks) is kept.

    Image y points down; it is flipped so "up" is positive.

    >>> j = np.zeros((1, 13, 2), np.float32); j[0, 1:3, 1] = 0.0; j[0, 7:9, 1] = 2.0
    >>> normalize_joints(j)[0, 0].tolist()  # head at the shoulders' height, torso length 2
    [0.0, 1.0]
    """
    j = np.asarray(joints, dtype=np.float64)
    if j.ndim != 3 or j.shape[2] != 2:
        raise ValueError(f"joints must be (T, J, 2), got shape {j.shape}")
    if mode not in JOINT_NORMS:
        raise ValueError(f"mode must be one of {JOINT_NORMS}, got {mode!r}")
    T, J, _ = j.shape
    if max(*hips, *shoulders) >= J:
        raise ValueError(f"hips {hips} / shoulders {shoulders} index beyond J={J} joints")
    j = j * np.array([1.0, -1.0])
    mid_hip = j[:, list(hips)].mean(1)  # (T, 2)
    mid_sh = j[:, list(shoulders)].mean(1)
    torso = float(np.median(np.linalg.norm(mid_sh - mid_hip, axis=-1)))
    if mode == "bbox":
        if bbox is None:
            raise ValueError("mode='bbox' needs bbox (T, 4)")
        b = np.asarray(bbox, dtype=np.float64)
        if b.ndim != 2 or b.shape[1] != 4 or b.shape[0] < 1:
            raise ValueError(f"bbox must be (T, 4), got shape {b.shape}")
        if b.shape[0] < T:
            b = np.concatenate([b, np.repeat(b[-1:], T - b.shape[0], 0)])
        b = b[:T]
        centre = np.stack([(b[:, 0] + b[:, 2]) / 2, -(b[:, 1] + b[:, 3]) / 2], -1)
        height = np.abs(b[:, 3] - b[:, 1])
        height = np.where(height > 1e-6, height, max(float(np.median(height)), 1.0))
        return ((j - centre[:, None]) / height[:, None, None]).astype(np.float32)
    scale = torso if torso > 1e-6 else max(float(j.std()), 1.0)
    centre = mid_hip[:, None] if mode == "hips" else mid_hip.mean(0)[None, None]
    return ((j - centre) / scale).astype(np.float32)
