"""Multi-task procedure videos with *region* features, for procedure learning (method ``sspl``).

Two sources, registered in :data:`procalign.data.featureset.FEATURE_SOURCES`:

* ``synthetic_regions``: generated scripts. A pool of ``num_steps`` named key-steps; each task
  draws ``steps_per_task`` of them (so tasks share key-steps) in a fixed task order; a video
  follows its task's order with occasional skipped / swapped steps and background gaps.
* ``breakfast_scripted``: the real Breakfast Actions frame labels (10 breakfast tasks, real step
  orders and durations, ``SIL`` as background) with *simulated* features; the labels are read
  from ``data.root`` (default ``$PROCALIGN_DATA/breakfast``).

Both simulate frames the same way (:func:`simulate_regions`). A frame has R regions of D
dimensions. Each video places a few *clutter objects* (prototypes shared by all videos) in fixed
regions that stay put for the whole video; during a key-step, one or two regions (chosen per
segment) show the key-step's prototype; during background they show one of a few background
sub-action prototypes shared by all tasks. Every region carries Gaussian noise. Averaging the R
regions therefore dilutes the key-step evidence with per-video clutter, which spatial attention
can learn to ignore.

Features are stored flattened, ``(T, R * D)`` float32 (region ``r`` in columns
``r*D:(r+1)*D``), so every FeatureSet tool (validation, caching, ``verify``) sees ordinary
``(L, D_in)`` arrays; the FeatureSet carries ``regions = R`` as an attribute.

Per video: ``evidence`` (T, R) bool, the regions showing the key-step (simulation truth, for
diagnostics); ``label`` = ``task`` = the task name, ``steps`` = the names of the key-steps in the
order the video performs them, ``step_index`` (T,) = position in ``steps`` (-1 on background).

>>> from procalign.data.featureset import DataConfig, load_featureset
>>> fs = load_featureset(DataConfig("synthetic_regions", synthetic={"num_tasks": 2}))
>>> fs.regions, fs.videos[0].features.shape[1] == fs.regions * 16
(6, True)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from procalign.data.featureset import (
    FEATURE_SOURCES,
    DataConfig,
    FeatureSet,
    FeatureVideo,
    _cap,
    _default_root,
)

__all__ = ["BreakfastConfig", "RegionSynthConfig", "breakfast_scripts", "simulate_regions"]

#: (step name or None for background, frames) segments of one video
Script = list[tuple[str | None, int]]


@dataclass
class FrameSimConfig:
    """How frames are simulated from scripts (shared by both sources).

    Attributes:
        regions: R regions per frame (1: no clutter, (T, D) features).
        dim: D per region.
        evidence_regions: at most this many regions (1 or 2, drawn per segment) show a step.
        clutter_objects: size of the pool of clutter prototypes shared by all videos.
        clutter: scale of clutter prototypes relative to step prototypes (1 = as strong).
        background_states: background sub-action prototypes shared by every task.
        noise: std of the per-region Gaussian noise (prototypes have unit-variance entries).
        seed: seeds prototypes and noise.
    """

    regions: int = 6
    dim: int = 16
    evidence_regions: int = 2
    clutter_objects: int = 12
    clutter: float = 1.0
    background_states: int = 3
    noise: float = 0.6
    seed: int = 0


@dataclass
class RegionSynthConfig(FrameSimConfig):
    """Generated multi-task scripts (``data.dataset: synthetic_regions``).

    Attributes:
        num_tasks, num_steps, steps_per_task: tasks, size of the shared key-step pool, key-steps
            per task (drawn from the pool without replacement, so tasks overlap).
        train_videos, test_videos: videos per task and split.
        step_frames, background_frames: [min, max] frames of a step / of a background gap
            (background also opens and closes each video).
        skip, swap: probability that a step is left out / swapped with the next one.
    """

    num_tasks: int = 4
    num_steps: int = 12
    steps_per_task: int = 5
    train_videos: int = 8
    test_videos: int = 4
    step_frames: tuple[int, int] = (5, 10)
    background_frames: tuple[int, int] = (1, 4)
    skip: float = 0.1
    swap: float = 0.1


@dataclass
class BreakfastConfig(FrameSimConfig):
    """Breakfast-scripted data (``data.dataset: breakfast_scripted``).

    Attributes:
        frame_stride: keep every Nth labelled frame (Breakfast is 15 fps; 8 ~ the paper's 2 fps).
        train_videos, test_videos: videos per task and split (None: all). One camera per
            (person, task) recording is kept (the others repeat its labels). Videos of a task,
            sorted by person, are split deterministically: every ``test_every``-th goes to test.
        test_every: see above.
        tasks: task names to keep (empty: all 10).
    """

    frame_stride: int = 8
    train_videos: int | None = None
    test_videos: int | None = None
    test_every: int = 3
    tasks: tuple[str, ...] = ()


def _rng(seed: int, *keys: Any) -> np.random.Generator:
    h = hashlib.sha256(repr((seed, *keys)).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def _settings(cls: type, settings: dict[str, Any]):
    if not isinstance(settings, dict):
        raise ValueError(f"data.synthetic must be a mapping, got {settings!r}")  # noqa: TRY004 (a config error)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"unknown data.synthetic key(s) {unknown}; known: {sorted(known)}")
    cfg = cls(**settings)
    for key in ("regions", "dim", "evidence_regions", "clutter_objects", "background_states"):
        if int(getattr(cfg, key)) < 1:
            raise ValueError(f"data.synthetic.{key} must be >= 1, got {getattr(cfg, key)}")
    if cfg.noise < 0 or cfg.clutter < 0:
        raise ValueError("data.synthetic.noise and data.synthetic.clutter must be >= 0")
    return cfg


def simulate_regions(
    scripts: list[Script], cfg: FrameSimConfig, video_ids: list[str],
    evidence: list[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Region features of scripted videos.

    Args:
        scripts: one script per video: ``[(step name | None, frames), ...]``.
        cfg: the frame simulation settings.
        video_ids: one id per video (seeds its clutter and noise).
        evidence: when a list is given, one (T, R) bool array per video is appended to it: the
            regions that show the key-step (False on background frames).

    Returns:
        one (T, R * D) float32 array per video, T = total frames of its script.
    """
    R, D = int(cfg.regions), int(cfg.dim)
    protos: dict[str, np.ndarray] = {}

    def proto(name: str) -> np.ndarray:
        if name not in protos:
            protos[name] = _rng(cfg.seed, "prototype", name).standard_normal(D)
        return protos[name]

    clutter_pool = [proto(f"__clutter_{i}") * cfg.clutter for i in range(cfg.clutter_objects)]
    out = []
    for vid, script in zip(video_ids, scripts):
        rng = _rng(cfg.seed, "video", vid)
        T = int(sum(n for _, n in script))
        x = np.empty((T, R, D), dtype=np.float64)
        # fixed clutter per region (one object each, drawn per video)
        objects = rng.integers(0, len(clutter_pool), size=R)
        x[:] = np.stack([clutter_pool[o] for o in objects])[None]
        shows = np.zeros((T, R), dtype=bool)
        t = 0
        for name, n in script:
            n = int(n)
            if name is None:
                content = proto(f"__background_{rng.integers(cfg.background_states)}")
            else:
                content = proto(name)
            if R == 1:
                x[t : t + n, 0] = content
            else:
                m = int(rng.integers(1, min(cfg.evidence_regions, R) + 1))
                where = rng.choice(R, size=m, replace=False)
                x[t : t + n, where] = content
            if name is not None:
                shows[t : t + n, slice(None) if R == 1 else where] = True
            t += n
        x += cfg.noise * rng.standard_normal(x.shape)
        out.append(x.reshape(T, R * D).astype(np.float32))
        if evidence is not None:
            evidence.append(shows)
    return out


def _videos(
    items: list[tuple[str, str, str, Script]], cfg: FrameSimConfig, description: str, simulated: bool
) -> FeatureSet:
    """items: (video id, task, split, script) -> FeatureSet with per-frame step positions."""
    masks: list[np.ndarray] = []
    feats = simulate_regions([s for *_, s in items], cfg, [i for i, *_ in items], masks)
    videos = []
    for (vid, task, split, script), x, shows in zip(items, feats, masks):
        names = tuple(n for n, _ in script if n is not None)
        pos = np.concatenate(
            [np.full(n, -1 if name is None else 0, dtype=np.int64) for name, n in script]
        )
        k = 0
        t = 0
        for name, n in script:
            if name is not None:
                pos[t : t + n] = k
                k += 1
            t += n
        video = FeatureVideo(vid, task, split, task, names or None, step_index=pos, array=x)
        video.evidence = shows  # type: ignore[attr-defined]  (diagnostics: attention on evidence)
        videos.append(video)
    fs = FeatureSet(videos, description, simulated=simulated)
    fs.regions = int(cfg.regions)  # type: ignore[attr-defined]
    return fs


def generated_scripts(cfg: RegionSynthConfig) -> list[tuple[str, str, str, Script]]:
    """(video id, task, split, script) of every generated video."""
    if cfg.steps_per_task > cfg.num_steps:
        raise ValueError(
            f"data.synthetic.steps_per_task ({cfg.steps_per_task}) must be <= num_steps "
            f"({cfg.num_steps})"
        )
    for key in ("num_tasks", "steps_per_task", "train_videos", "test_videos"):
        if getattr(cfg, key) < 1:
            raise ValueError(f"data.synthetic.{key} must be >= 1, got {getattr(cfg, key)}")
    s_lo, s_hi = (int(v) for v in cfg.step_frames)
    b_lo, b_hi = (int(v) for v in cfg.background_frames)
    if not 1 <= s_lo <= s_hi or not 0 <= b_lo <= b_hi:
        raise ValueError("data.synthetic.step_frames needs 1 <= min <= max, background_frames 0 <= min <= max")
    pool = [f"step{i:02d}" for i in range(cfg.num_steps)]
    items = []
    for a in range(cfg.num_tasks):
        task = f"task{a:02d}"
        picks = _rng(cfg.seed, "task", a).choice(len(pool), cfg.steps_per_task, replace=False)
        order = [pool[int(i)] for i in picks]
        for split, n in (("train", cfg.train_videos), ("test", cfg.test_videos)):
            for i in range(n):
                vid = f"{task}_{split}_{i:03d}"
                rng = _rng(cfg.seed, "script", vid)
                steps = [s for s in order if rng.random() >= cfg.skip] or [order[0]]
                j = 0
                while j < len(steps) - 1:
                    if rng.random() < cfg.swap:
                        steps[j], steps[j + 1] = steps[j + 1], steps[j]
                        j += 1
                    j += 1
                script: Script = []
                for s in steps:
                    gap = int(rng.integers(b_lo, b_hi + 1))
                    if gap:
                        script.append((None, gap))
                    script.append((s, int(rng.integers(s_lo, s_hi + 1))))
                gap = int(rng.integers(b_lo, b_hi + 1))
                if gap:
                    script.append((None, gap))
                items.append((vid, task, split, script))
    return items


def breakfast_scripts(
    root: str | Path, cfg: BreakfastConfig
) -> list[tuple[str, str, str, Script]]:
    """(video id, task, split, script) from Breakfast ``groundTruth/*.txt`` (one label a frame).

    ``SIL`` frames are background; consecutive equal labels form a segment; every
    ``frame_stride``-th frame is kept (segments shorter than that keep one frame).
    """
    gt = Path(root) / "groundTruth"
    files = sorted(gt.glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"no Breakfast labels in {gt} (expected groundTruth/<video>.txt)")
    if cfg.frame_stride < 1 or cfg.test_every < 2:
        raise ValueError("data.synthetic.frame_stride must be >= 1 and test_every >= 2")
    by_task: dict[str, dict[str, Path]] = {}
    for f in files:
        parts = f.stem.split("_")
        if len(parts) < 4:
            raise ValueError(f"{f}: Breakfast names look like P16_cam01_P16_cereals")
        person, task = parts[0], parts[-1]
        by_task.setdefault(task, {}).setdefault(person, f)  # one camera per recording
    unknown = sorted(set(cfg.tasks) - set(by_task))
    if unknown:
        raise ValueError(f"data.synthetic.tasks {unknown} are not Breakfast tasks; known: {sorted(by_task)}")
    items = []
    for task in sorted(cfg.tasks or by_task):
        people = sorted(by_task[task])
        counts = {"train": 0, "test": 0}
        for i, person in enumerate(people):
            split = "test" if i % cfg.test_every == cfg.test_every - 1 else "train"
            cap = cfg.test_videos if split == "test" else cfg.train_videos
            if cap is not None and counts[split] >= cap:
                continue
            labels = by_task[task][person].read_text().split()
            if not labels:
                raise ValueError(f"{by_task[task][person]}: no frame labels")
            script: Script = []
            start = 0
            for t in range(1, len(labels) + 1):
                if t == len(labels) or labels[t] != labels[start]:
                    n = max(1, round((t - start) / cfg.frame_stride))
                    name = None if labels[start] == "SIL" else labels[start]
                    if script and script[-1][0] == name:
                        script[-1] = (name, script[-1][1] + n)
                    else:
                        script.append((name, n))
                    start = t
            counts[split] += 1
            items.append((by_task[task][person].stem, task, split, script))
    return items


@FEATURE_SOURCES.register("synthetic_regions")
def _synthetic_regions(cfg: DataConfig, cache_dir: Path | None, progress: bool) -> FeatureSet:
    sc = _settings(RegionSynthConfig, cfg.synthetic)
    fs = _videos(generated_scripts(sc), sc, f"synthetic region procedures (seed {sc.seed})", False)
    regions = fs.regions  # type: ignore[attr-defined]
    fs = _cap(fs, cfg)
    fs.regions = regions  # type: ignore[attr-defined]
    return fs


@FEATURE_SOURCES.register("breakfast_scripted")
def _breakfast_scripted(cfg: DataConfig, cache_dir: Path | None, progress: bool) -> FeatureSet:
    sc = _settings(BreakfastConfig, cfg.synthetic)
    root = _default_root(cfg, "breakfast")
    fs = _videos(
        breakfast_scripts(root, sc), sc,
        f"Breakfast frame labels at {root} with simulated region features (seed {sc.seed})", True,
    )
    regions = fs.regions  # type: ignore[attr-defined]
    fs = _cap(fs, cfg)
    fs.regions = regions  # type: ignore[attr-defined]
    return fs
