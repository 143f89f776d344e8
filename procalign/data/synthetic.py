"""The embedded default dataset: synthetic procedural videos with full ground truth.

The world
---------
A *task* has a vocabulary of steps. A *procedure* of the task is an ordered script of steps (a step
may repeat). Within a task, procedures are SVIP-style hard negatives of one base script: two steps
swapped, one step moved, or one step replaced. Swaps and moves keep the multiset of steps, so those
procedures differ **only in order**.

A video of a procedure is a (T, D) feature sequence. With ``s`` the step shown at frame ``t``,
``u`` in [0, 1] the (speed-warped) progress inside that step, ``c_task`` a task/scene vector,
``A_v = I + mixing * G / sqrt(D)`` and ``b_v`` a per-video transform and offset, ``w_t z_v`` a
slow per-video drift (``w_t`` a sine of random frequency and phase) and ``e_t`` temporally
correlated (AR(1)) noise::

    x_t = A_v (p_s + c_task + (2u - 1) m_s) + b_v + w_t z_v + e_t   (background: p_s -> g, m_s -> 0)

``p_s`` is the step prototype and ``m_s`` its motion direction (so frames inside a step are
ordered too). Step durations are Dirichlet-distributed per video, each step's inner speed is warped
(``u -> u ** gamma``), videos start and end with a random stretch of background, short background
gaps may appear between steps, and the video length is jittered around ``num_frames``.

Why it is learnable but not trivial: the expected mean-pooled feature of a video depends only on
the multiset of its steps, so video-level pooling cannot tell order-only procedures apart (chance
level), while anything that keeps temporal order (alignment, DTW, even pooling per temporal
segment) can. The per-video transform, offset and noise make raw frame matching imperfect, so a
learned encoder has room to improve.

Ground truth per frame: ``step_ids`` (index into the vocabulary, 0 = background), ``phases``
(position of the step in the procedure's script, -1 = background), ``progress`` (fraction of the
procedure done, in [0, 1]) and ``step_progress`` (progress inside the current step).

The same generator also simulates the videos of real procedure scripts (SVIP's CSV label bank,
splits and test pairs, :func:`from_svip`), keeping the real ids and the official pair protocol.

On disk (:func:`write_folder`, in :mod:`procalign.data.synthetic_io` with :func:`from_svip` and
:func:`read_folder`; all three are importable from here too) it uses the ``folder`` layout::

    root/index.csv                  video_id,label,split,steps,task (steps joined by ';')
    root/features/<video_id>.npy    (T, D) float32
    root/labels/<video_id>.txt      per-frame step names, one per line ("background" for gaps)
    root/phases/<video_id>.txt      per frame "phase progress step_progress" (extra ground truth)
    root/videos/<video_id>.mp4      optional rendered videos
    root/pairs.csv                  video_id_1,video_id_2,same (test pairs)
    root/meta.json                  generator, config, seed, vocabulary, procedures
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from procalign.data.records import PairRecord, VideoRecord

BACKGROUND = "background"

#: Named generator settings (``SynthConfig(**PRESETS[name])``; ``data.synthetic.preset``).
#: ``nuisance``: per-video subject offsets and mixing, smooth monotone time warps, idle gaps
#: between steps, steps with internal motion, steps shared across tasks, background activity in
#: a shared subspace, and test procedures unseen in training (docs/generalisation.md).
PRESETS: dict[str, dict] = {
    "nuisance": {
        "num_tasks": 4,
        "procedures_per_task": 6,
        "videos_per_procedure": 10,
        "num_frames": 64,
        "steps_per_task": 8,
        "steps_per_procedure": 6,
        "shared_steps": 3,
        "background": 0.5,
        "video_nuisance": 2.0,
        "mixing": 0.7,
        "motion": 1.0,
        "speed": 0.7,
        "time_warp": 0.6,
        "drift": 1.0,
        "distractor": 1.0,
        "distractor_rank": 6,
        "split_by": "procedure",
        "test_fraction": 0.34,
    },
}


def preset_settings(settings: dict) -> dict:
    """``{"preset": name, **keys}`` -> the preset's settings updated by the other keys.

    >>> preset_settings({"preset": "nuisance", "seed": 3})["seed"], preset_settings({"dim": 8})
    (3, {'dim': 8})
    """
    settings = dict(settings)
    name = settings.pop("preset", None)
    if name is None:
        return settings
    if name not in PRESETS:
        raise ValueError(f"unknown synthetic preset {name!r}; known: {sorted(PRESETS)}")
    return {**PRESETS[name], **settings}
GENERATOR = "procalign.data.synthetic"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SynthConfig:
    """Settings of the generator; every field is recorded in ``meta.json``.

    Attributes:
        num_tasks: tasks, each with its own step vocabulary.
        procedures_per_task: procedures (labels) per task, >= 2 (hard negatives need a sibling).
        videos_per_procedure: videos generated per procedure.
        num_frames: mean video length T (frames).
        dim: D, feature size.
        steps_per_task: vocabulary size of each task.
        steps_per_procedure: script length, repeats included.
        repeat_prob: chance that a task's base script repeats one step (non-adjacent).
        length_jitter: video length is drawn in ``num_frames * [1 - j, 1 + j]``.
        background: scale of background: lead/tail stretches of up to ``background/2 * T`` frames
            and a gap between two steps with this probability; 0 disables background.
        noise: norm of the per-frame noise (AR(1) in time, correlation 0.5).
        video_nuisance: norm of the per-video offset ``b_v``.
        mixing: strength of the per-video linear transform ``A_v``.
        speed: within-step speed warp ``u -> u ** exp(U(-speed, speed))``.
        motion: norm of the within-step motion direction ``m_s``.
        drift: norm of a slow per-video drift ``sin(2 pi f t / T + phi) z_v`` added to ``b_v``
            (camera/scene change that centring a video cannot remove).
        test_fraction: share of videos (``split_by="video"``) or of each task's procedures
            (``split_by="procedure"``, SVIP-like unseen procedures) put in the test split.
        split_by: ``"video"`` or ``"procedure"``.
        seed: everything is a deterministic function of the config.
        text_prototypes: a text encoder name (:data:`procalign.models.text.TEXT_ENCODERS`, e.g.
            ``"minilm"``) or None. When set, each step's prototype is built from its sentence:
            ``sqrt(w) * unit(P e_s) + sqrt(1 - w) * r_s`` (renormalised), with ``e_s`` the step
            sentence's embedding, ``P`` one fixed random (D x D_text) projection and ``r_s`` the
            step's own random direction, so steps described alike ("take up the test tube",
            "take up the beaker") look alike and unrelated steps do not. None: independent
            random prototypes (the default; every earlier dataset is unchanged).
        text_weight: ``w`` above, in [0, 1].
        shared_steps: steps of every task's vocabulary drawn from one pool common to all tasks
            (``shared-step{j}``: the same step in several tasks, as "pour water" is), out of
            ``steps_per_task``; 0 = every task has its own steps.
        time_warp: a smooth monotone warp of each whole video, ``t -> t ** exp(U(-w, w))``
            (a recording that starts slowly and speeds up, or the reverse); 0 = none.
        distractor: norm of the background activity: a smooth per-video trajectory inside one
            fixed ``distractor_rank``-dimensional subspace shared by all videos (camera motion,
            people in the background). Per-video centring and smoothing cannot remove it; a
            learned encoder can learn to ignore the subspace. 0 = none.
        distractor_rank: dimension of that subspace.

    :data:`PRESETS` names sets of these settings (``nuisance``: the hard generator of
    docs/generalisation.md); ``data.synthetic: {preset: nuisance, ...}`` starts from one, and
    keys given beside it win.
    """

    num_tasks: int = 3
    procedures_per_task: int = 4
    videos_per_procedure: int = 20
    num_frames: int = 48
    dim: int = 64
    steps_per_task: int = 6
    steps_per_procedure: int = 5
    repeat_prob: float = 0.5
    length_jitter: float = 0.25
    background: float = 0.2
    noise: float = 0.8
    video_nuisance: float = 1.0
    mixing: float = 0.5
    speed: float = 0.5
    motion: float = 0.6
    drift: float = 0.7
    test_fraction: float = 0.25
    split_by: str = "video"
    seed: int = 0
    text_prototypes: str | None = None
    text_weight: float = 0.8
    shared_steps: int = 0
    time_warp: float = 0.0
    distractor: float = 0.0
    distractor_rank: int = 4

    @property
    def shortest_video(self) -> int:
        """Frames of the shortest possible video."""
        return int(self.num_frames * (1 - self.length_jitter))

    def __post_init__(self) -> None:
        positive = ("num_tasks", "videos_per_procedure", "num_frames", "dim", "steps_per_task")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.procedures_per_task < 2:
            raise ValueError(f"procedures_per_task must be >= 2, got {self.procedures_per_task}")
        if self.steps_per_procedure < 2:
            raise ValueError(f"steps_per_procedure must be >= 2, got {self.steps_per_procedure}")
        if self.steps_per_task < 2:
            raise ValueError(f"steps_per_task must be >= 2, got {self.steps_per_task}")
        if not 0 <= self.length_jitter < 1:
            raise ValueError(f"length_jitter must be in [0, 1), got {self.length_jitter}")
        for name in ("repeat_prob", "background", "test_fraction"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        for name in ("noise", "video_nuisance", "mixing", "speed", "motion", "drift"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("time_warp", "distractor"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not isinstance(self.shared_steps, int) or not 0 <= self.shared_steps < self.steps_per_task:
            raise ValueError(
                f"shared_steps must be an int in [0, steps_per_task={self.steps_per_task}), got "
                f"{self.shared_steps!r}"
            )
        if not isinstance(self.distractor_rank, int) or not 1 <= self.distractor_rank <= self.dim:
            raise ValueError(
                f"distractor_rank must be an int in [1, dim={self.dim}], got {self.distractor_rank!r}"
            )
        if self.split_by not in ("video", "procedure"):
            raise ValueError(f"split_by must be 'video' or 'procedure', got {self.split_by!r}")
        if not 0.0 <= float(self.text_weight) <= 1.0:
            raise ValueError(f"text_weight must be in [0, 1], got {self.text_weight}")
        if self.text_prototypes is not None:
            from procalign.models.text import TEXT_ENCODERS

            if self.text_prototypes not in TEXT_ENCODERS:
                raise ValueError(
                    f"text_prototypes must be a text encoder ({', '.join(TEXT_ENCODERS.names())})"
                    f" or null, got {self.text_prototypes!r}"
                )


@dataclass(frozen=True)
class Procedure:
    """One procedure: its label (``"task.index"``), task, ordered steps and how it was derived."""

    label: str
    task: str
    steps: tuple[str, ...]
    edit: str = "base"


@dataclass
class SyntheticVideo:
    """One generated video and its ground truth (all per-frame arrays have length T).

    Attributes:
        record: the :class:`VideoRecord` (``frame_labels`` = ``step_ids``).
        features: float32 (T, D).
        step_ids: int64 (T,), vocabulary index, 0 = background.
        phases: int64 (T,), position in the procedure's script, -1 = background.
        progress: float32 (T,), fraction of the procedure done, non-decreasing in [0, 1].
        step_progress: float32 (T,), progress inside the current step (0 on background).
    """

    record: VideoRecord
    features: np.ndarray
    step_ids: np.ndarray
    phases: np.ndarray
    progress: np.ndarray
    step_progress: np.ndarray

    @property
    def video_id(self) -> str:
        return self.record.video_id


@dataclass
class SyntheticDataset:
    """Generated videos plus the world they come from.

    Iterating yields ``(features (T, D), step_ids (T,), record)`` triples.

    Attributes:
        videos: the generated videos.
        procedures: every procedure, in label order.
        vocabulary: step names; index 0 is ``"background"``.
        pairs: test verification pairs (balanced positives / same-task negatives, or the official
            list for :func:`from_svip`).
        meta: generator name, config, seed and world description (written to ``meta.json``).
    """

    videos: list[SyntheticVideo]
    procedures: list[Procedure]
    vocabulary: list[str]
    pairs: list[PairRecord]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, VideoRecord]:
        v = self.videos[index]
        return v.features, v.step_ids, v.record

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, VideoRecord]]:
        return (self[i] for i in range(len(self)))

    @property
    def records(self) -> list[VideoRecord]:
        return [v.record for v in self.videos]

    def split(self, name: str) -> list[SyntheticVideo]:
        """Videos of one split (``"train"`` or ``"test"``)."""
        return [v for v in self.videos if v.record.split == name]


# ----------------------------------------------------------------------------- randomness


def _stable_int(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def _rng(seed: int, *keys: int | str) -> np.random.Generator:
    parts = [int(seed)] + [k if isinstance(k, int) else _stable_int(k) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(parts))


def _gauss(rng: np.random.Generator, dim: int, norm: float) -> np.ndarray:
    """A random vector of expected norm ``norm``."""
    return rng.normal(0.0, norm / np.sqrt(dim), size=dim)


# ----------------------------------------------------------------------------- procedures


def _base_script(
    rng: np.random.Generator, vocab: list[str], length: int, repeat: bool
) -> list[str]:
    distinct = min(len(vocab), length - 1 if repeat else length)
    script = [vocab[i] for i in rng.choice(len(vocab), size=distinct, replace=False)]
    while len(script) < length:
        # insert a repeat of an existing step, away from its first occurrence when possible
        step = script[int(rng.integers(len(script)))]
        first = script.index(step)
        spots = [i for i in range(len(script) + 1) if abs(i - first) > 1] or list(
            range(len(script) + 1)
        )
        script.insert(int(rng.choice(spots)), step)
    return script


def _edit(rng: np.random.Generator, script: list[str], vocab: list[str], kind: str) -> list[str]:
    out = list(script)
    n = len(out)
    if kind == "swap":
        choices = [(i, j) for i in range(n) for j in range(i + 1, n) if out[i] != out[j]]
        if not choices:
            return out
        i, j = choices[int(rng.integers(len(choices)))]
        out[i], out[j] = out[j], out[i]
    elif kind == "move":
        i = int(rng.integers(n))
        step = out.pop(i)
        j = int(rng.choice([k for k in range(n) if k != i]))
        out.insert(j, step)
    else:  # replace
        i = int(rng.integers(n))
        others = [s for s in vocab if s != out[i]]
        out[i] = others[int(rng.integers(len(others)))]
    return out


def make_procedures(config: SynthConfig) -> tuple[list[Procedure], list[str]]:
    """The tasks' procedures and the step vocabulary (index 0 = background).

    Procedure ``k.1`` is task k's base script; ``k.2`` swaps two of its steps (order-only
    difference); later ones swap, move (order-only) or replace one step (2:1:1 odds).
    """
    rng = _rng(config.seed, "procedures")
    procedures: list[Procedure] = []
    vocabulary = [BACKGROUND]
    shared = [f"shared-step{j}" for j in range(1, config.shared_steps + 1)]
    vocabulary.extend(shared)
    for k in range(1, config.num_tasks + 1):
        own = [f"t{k}-step{j}" for j in range(1, config.steps_per_task - len(shared) + 1)]
        vocabulary.extend(own)
        vocab = shared + own
        repeat = bool(rng.random() < config.repeat_prob)
        base = _base_script(rng, vocab, config.steps_per_procedure, repeat)
        scripts = [base]
        edits = ["base"]
        for p in range(1, config.procedures_per_task):
            for _ in range(200):
                kind = "swap" if p == 1 else str(rng.choice(["swap", "swap", "move", "replace"]))
                cand = _edit(rng, base, vocab, kind)
                if cand not in scripts:
                    break
            else:
                raise ValueError(
                    f"cannot make {config.procedures_per_task} distinct procedures from "
                    f"{config.steps_per_task} steps and scripts of {config.steps_per_procedure}; "
                    "raise steps_per_task or steps_per_procedure"
                )
            scripts.append(cand)
            edits.append(kind)
        for p, (script, kind) in enumerate(zip(scripts, edits), start=1):
            procedures.append(Procedure(f"{k}.{p}", str(k), tuple(script), kind))
    return procedures, vocabulary


# ----------------------------------------------------------------------------- the world


@dataclass
class _World:
    dim: int
    prototypes: dict[str, np.ndarray]
    motions: dict[str, np.ndarray]
    task_vectors: dict[str, np.ndarray]
    background: np.ndarray
    distractor_basis: np.ndarray  # (rank, D) orthonormal rows


def _make_world(config: SynthConfig, vocabulary: list[str], tasks: list[str]) -> _World:
    d = config.dim
    protos, motions = {}, {}
    for name in vocabulary[1:]:
        r = _rng(config.seed, "step", name)
        protos[name] = _gauss(r, d, 1.0)
        motions[name] = _gauss(r, d, config.motion)
    if config.text_prototypes:
        protos = _text_prototypes(config, vocabulary[1:], protos)
    task_vecs = {t: _gauss(_rng(config.seed, "task", t), d, 1.0) for t in tasks}
    basis = np.linalg.qr(_rng(config.seed, "distractor").normal(size=(d, config.distractor_rank)))[0]
    return _World(d, protos, motions, task_vecs, _gauss(_rng(config.seed, "background"), d, 1.0),
                  basis.T)


def _text_prototypes(
    config: SynthConfig, steps: list[str], random_protos: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Step prototypes from the step sentences (see ``SynthConfig.text_prototypes``)."""
    from procalign.models.text import default_cache_dir, encode_texts

    emb = encode_texts(steps, config.text_prototypes, default_cache_dir())
    proj = _rng(config.seed, "text-projection").normal(size=(config.dim, emb.shape[1]))
    text = emb @ proj.T
    text /= np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)
    w = float(config.text_weight)
    out = {}
    for i, name in enumerate(steps):
        p = np.sqrt(w) * text[i] + np.sqrt(1 - w) * random_protos[name]
        out[name] = p / max(float(np.linalg.norm(p)), 1e-12)
    return out


def _layout(rng: np.random.Generator, num_steps: int, length: int, background: float) -> list[int]:
    """Frame counts: [lead, step_1, gap_1, step_2, ..., step_K, tail], each step >= 1 frame."""
    lead = int(rng.integers(0, int(background * length / 2) + 1))
    tail = int(rng.integers(0, int(background * length / 2) + 1))
    gap_max = max(1, length // 16)
    gaps = [
        int(rng.integers(1, gap_max + 1)) if rng.random() < background else 0
        for _ in range(num_steps - 1)
    ]
    avail = length - lead - tail - sum(gaps)
    if avail < num_steps:  # too short for the nuisance: drop it
        lead = tail = 0
        gaps = [0] * (num_steps - 1)
        avail = length
    weights = rng.dirichlet(np.full(num_steps, 4.0))
    extra = (avail - num_steps) * weights
    durations = 1 + np.floor(extra).astype(int)
    left = avail - int(durations.sum())
    durations[np.argsort(-(extra - np.floor(extra)))[:left]] += 1
    out = [lead]
    for i, dur in enumerate(durations.tolist()):
        out.append(dur)
        out.append(gaps[i] if i < num_steps - 1 else tail)
    return out


def simulate_video(
    video_id: str,
    procedure: Procedure,
    vocabulary: list[str],
    world: _World,
    config: SynthConfig,
    split: str | None = None,
) -> SyntheticVideo:
    """Generate one video of ``procedure``; deterministic in (config.seed, video_id)."""
    rng = _rng(config.seed, "video", video_id)
    d = world.dim
    j = config.length_jitter
    length = int(round(config.num_frames * rng.uniform(1 - j, 1 + j)))
    length = max(length, len(procedure.steps))
    parts = _layout(rng, len(procedure.steps), length, config.background)
    index = {name: i for i, name in enumerate(vocabulary)}
    k = len(procedure.steps)

    step_ids = np.zeros(length, dtype=np.int64)
    phases = np.full(length, -1, dtype=np.int64)
    progress = np.zeros(length, dtype=np.float32)
    step_progress = np.zeros(length, dtype=np.float32)
    clean = np.zeros((length, d))
    task_vec = world.task_vectors[procedure.task]
    t = 0
    done = 0.0
    for i, count in enumerate(parts):
        if i % 2 == 0:  # background stretch
            clean[t : t + count] = world.background + task_vec
            progress[t : t + count] = done
            t += count
            continue
        phase = i // 2
        name = procedure.steps[phase]
        gamma = float(np.exp(rng.uniform(-config.speed, config.speed)))
        u = ((np.arange(count) + 0.5) / count) ** gamma
        sl = slice(t, t + count)
        step_ids[sl] = index[name]
        phases[sl] = phase
        step_progress[sl] = u
        progress[sl] = (phase + u) / k
        clean[sl] = world.prototypes[name] + task_vec + (2 * u[:, None] - 1) * world.motions[name]
        done = (phase + 1) / k
        t += count

    if config.time_warp > 0:  # a monotone warp of the whole recording (labels follow it)
        g = float(np.exp(_rng(config.seed, "warp", video_id).uniform(-1, 1) * config.time_warp))
        src = np.minimum((((np.arange(length) + 0.5) / length) ** g * length).astype(int),
                         length - 1)
        if len(np.unique(phases[src][phases[src] >= 0])) == k:  # every step keeps a frame
            clean, step_ids, phases = clean[src], step_ids[src], phases[src]
            progress, step_progress = progress[src], step_progress[src]
    mix = np.eye(d) + config.mixing * rng.normal(0.0, 1.0 / np.sqrt(d), size=(d, d))
    offset = _gauss(rng, d, config.video_nuisance)
    noise = np.empty((length, d))
    rho = 0.5
    noise[0] = _gauss(rng, d, config.noise)
    for i in range(1, length):
        noise[i] = rho * noise[i - 1] + np.sqrt(1 - rho**2) * _gauss(rng, d, config.noise)
    freq, phase0 = rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi)
    wave = np.sin(2 * np.pi * freq * np.arange(length) / length + phase0)
    drift = wave[:, None] * _gauss(rng, d, config.drift)
    features = clean @ mix.T + offset + drift + noise
    if config.distractor > 0:  # smooth background activity in the shared subspace
        r = _rng(config.seed, "activity", video_id)
        tt = np.arange(length)[:, None] / max(length, 1)
        freqs = r.uniform(0.5, 3.0, size=(1, world.distractor_basis.shape[0]))
        coef = np.sin(2 * np.pi * freqs * tt + r.uniform(0, 2 * np.pi, size=freqs.shape))
        coef *= config.distractor / np.sqrt(freqs.shape[1]) * np.sqrt(2)
        features = features + coef @ world.distractor_basis
    features = features.astype(np.float32)

    record = VideoRecord(
        video_id=video_id,
        label=procedure.label,
        steps=procedure.steps,
        frame_labels=step_ids,
        split=split,
        task=procedure.task,
        meta={"edit": procedure.edit},
    )
    return SyntheticVideo(record, features, step_ids, phases, progress, step_progress)


def _test_pairs(records: list[VideoRecord], seed: int) -> list[PairRecord]:
    from procalign.data.pairs import PairSampler

    test = [r for r in records if r.split == "test"]
    if len(test) < 2:
        return []
    tasks = {r.task for r in test}
    same_task_possible = any(len({r.label for r in test if r.task == t}) > 1 for t in tasks)
    sampler = PairSampler(test, negatives="same_task" if same_task_possible else "any", seed=seed)
    return sampler.per_video(positives=1, negatives=1)


def _progress_bar(total: int, desc: str, show: bool):
    from procalign._progress import bar as tqdm

    return tqdm(total=total, desc=desc, unit="video", disable=not show, leave=False)


def make_dataset(
    config: SynthConfig | None = None, *, progress: bool = False, **overrides: Any
) -> SyntheticDataset:
    """Generate a synthetic procedural dataset in memory.

    Args:
        config: a :class:`SynthConfig`; keyword ``overrides`` replace its fields
            (``make_dataset(num_tasks=2, dim=32, seed=1)``).
        progress: show a tqdm progress bar.

    Returns:
        :class:`SyntheticDataset`; iterate it for ``(features (T, D), step_ids (T,), record)``.

    >>> ds = make_dataset(num_tasks=1, procedures_per_task=2, videos_per_procedure=2, dim=8)
    >>> features, step_ids, record = ds[0]
    >>> features.shape[1], len(step_ids) == len(features), record.label
    (8, True, '1.1')
    """
    config = SynthConfig(**{**asdict(config or SynthConfig()), **overrides})
    if config.shortest_video < config.steps_per_procedure:
        raise ValueError(
            f"num_frames={config.num_frames} with length_jitter={config.length_jitter} gives "
            f"videos of {config.shortest_video} frames, fewer than steps_per_procedure="
            f"{config.steps_per_procedure}"
        )
    procedures, vocabulary = make_procedures(config)
    world = _make_world(config, vocabulary, sorted({p.task for p in procedures}))
    split_rng = _rng(config.seed, "split")
    test_labels: set[str] = set()
    if config.split_by == "procedure":
        for task in sorted({p.task for p in procedures}, key=int):
            labels = [p.label for p in procedures if p.task == task]
            n_test = min(len(labels) - 1, max(1, round(config.test_fraction * len(labels))))
            if config.test_fraction == 0:
                n_test = 0
            test_labels.update(split_rng.choice(labels, size=n_test, replace=False).tolist())
    videos: list[SyntheticVideo] = []
    n = config.videos_per_procedure
    with _progress_bar(len(procedures) * n, "synth", progress) as bar:
        for proc in procedures:
            if config.split_by == "video":
                n_test = min(n - 1, round(config.test_fraction * n)) if n > 1 else 0
                is_test = np.zeros(n, dtype=bool)
                is_test[split_rng.choice(n, size=n_test, replace=False)] = True
            else:
                is_test = np.full(n, proc.label in test_labels)
            for i in range(n):
                vid = f"{proc.label}_{i:03d}"
                split = "test" if is_test[i] else "train"
                videos.append(simulate_video(vid, proc, vocabulary, world, config, split))
                bar.update(1)
    pairs = _test_pairs([v.record for v in videos], config.seed)
    meta = _meta(config, procedures, vocabulary, source="synthetic")
    return SyntheticDataset(videos, procedures, vocabulary, pairs, meta)


def _meta(
    config: SynthConfig, procedures: list[Procedure], vocabulary: list[str], source: str
) -> dict:
    return {
        "generator": GENERATOR,
        "format_version": FORMAT_VERSION,
        "source": source,
        "seed": config.seed,
        "config": asdict(config),
        "feature_dim": config.dim,
        "vocabulary": list(vocabulary),
        "procedures": {
            p.label: {"task": p.task, "steps": list(p.steps), "edit": p.edit} for p in procedures
        },
        "extra_files": {
            "phases": "phases/<video_id>.txt: per frame 'phase progress step_progress'; "
            "phase -1 = background",
        },
    }


#: names that live in procalign.data.synthetic_io, importable from here as before the split
_IO = ("from_svip", "read_folder", "write_folder")


def __getattr__(name: str) -> Any:
    if name in _IO:
        from procalign.data import synthetic_io

        return getattr(synthetic_io, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
