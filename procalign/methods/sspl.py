"""Multi-task procedure learning (Elhamifar & Huynh, ECCV 2020), as the recipe ``sspl``.

Top to bottom:

1. **Inputs**: region features of every video, flattened (T, R * D) (``synthetic_regions``,
   ``breakfast_scripted`` from :mod:`procalign.data.synthetic_regions`; any FeatureSet source,
   e.g. a folder or the CrossTask / ProceL readers with ``features_dir``, gives R = 1 unless
   ``data.regions`` says otherwise). The video's label is its task.
2. **Teacher** (:mod:`procalign.losses.sspl`): at the start of every ``teacher.refit_every``-th
   epoch, mini-batch k-means with M centres over the current attention features of all training
   frames (warm-started from, and Hungarian re-matched to, the previous centres), then per task
   greedy facility-location selection of k states (Eq. 2). At the start of *every* epoch each
   training frame gets the pseudo-label r_t = nearest selected state of its task, from the
   current attention features. The teacher's state lives in model buffers, so it is saved in
   every checkpoint and a resumed run is bit-identical to an uninterrupted one.
3. **Student** (:class:`procalign.models.sspl.SSPLModel`): spatial attention (Eq. 1), 1-D FCN
   localiser (Eq. 3), key-step pooling (Eq. 4), attention over key-steps (Eq. 5), linear task
   classifier; loss = ranking (Eq. 7; ``loss.localisation=cross_entropy``: Remark 3) +
   lambda * task cross-entropy (Eq. 6), RMSprop lr 1e-3, weight decay 1e-4, 1 video per step.
4. **Evaluation** (:func:`procalign.eval.keystep_scores`): per task, Hungarian matching of the
   discovered key-steps (state ids) to the ground-truth steps over all test videos of the task;
   frame recall / precision / F1 / IoU averaged over tasks; task accuracy per video. Key-steps of
   a test video are argmax over its task's k selected states of the scores s (task: the true one,
   and in separate rows the predicted one). Next to the network: ``random`` (each frame one of k
   ids uniformly), ``uniform`` (k equal segments), ``teacher_initial`` (the teacher on the mean
   region, i.e. untrained uniform attention) and ``teacher_final`` (the trained run's teacher,
   nearest selected centre of the learned attention features).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import procalign.data.synthetic_regions  # noqa: F401  (registers the region sources)
from procalign.config import OptimConfig, TrainConfig
from procalign.data import featureset as fset
from procalign.methods.auto import check_int_or_auto, is_auto
from procalign.eval.keystep import keystep_scores, task_accuracy
from procalign.eval.report import row
from procalign.losses import sspl as T
from procalign.methods import METHODS
from procalign.methods.base import Recipe, TrainSpec
from procalign.models.sspl import INPUT_NORMS, POOLINGS, SSPLModel

LOCALISATION_LOSSES = ("ranking", "cross_entropy")
BACKGROUND_RULES = ("none", "unselected")
BASELINES = ("random", "uniform", "teacher_initial", "teacher_final")


@dataclass
class DataConfig(fset.DataConfig):
    """Shared data settings; ``regions``: R of the (T, R * D) inputs (None: the source's own,
    1 for sources without regions)."""

    dataset: str = "synthetic_regions"
    regions: int | None = None


@dataclass
class ModelConfig:
    """The network (Sec. 3.1).

    Attributes:
        num_states: M latent states (paper: 50 multi-task, 30 task-specific).
        hidden, levels, kernel: KLN channels, pool / unpool levels, temporal kernel. The paper
            takes FCN [17] to 1-D without giving sizes; 2 levels of x2 pooling keep steps of a
            few frames (2 fps) resolvable.
        attention: Eq. 1 (false: uniform weights = mean region; the "no attention" ablation).
        learned_pooling: Eq. 5 (false: beta = 1/M; the "no learned pooling" ablation).
        pooling: Eq. 4 as ``average`` (sum_t p f / sum_t p: the text's "weighted average";
            default because h_m then stays on the scale of f whatever a state's share of the
            video) or ``sum`` (the equation as printed).
        input_norm: after standardising by the training set's mean / std (``dataset``, the
            default), also per video: ``center`` (subtract the video's mean frame) or
            ``standardize`` (and divide by its per-dimension std), against per-subject or
            per-camera offsets. The teacher, the localiser and the key-step states see the
            normalised frames; the task classifier pools the dataset-standardised frames with
            the same state probabilities (the per-video normalisation also removes what a
            task's mean frame carries).
    """

    num_states: int = 50
    hidden: int = 64
    levels: int = 2
    kernel: int = 5
    attention: bool = True
    learned_pooling: bool = True
    pooling: str = "average"
    input_norm: str = "dataset"


@dataclass
class TeacherConfig:
    """The k-means / subset-selection teacher (Sec. 2.1.2).

    Attributes:
        k: key-steps per task (paper: 7, 10, 12, 15).
        refit_every: refit k-means and the selection every N epochs (the paper leaves the period
            open; 1 = every epoch, so the teacher follows the attention features as they learn,
            at the cost of one k-means per epoch, cheap next to an epoch of the network).
            Pseudo-labels are re-assigned every epoch from the current features.
        kmeans_batch, kmeans_iter: MiniBatchKMeans batch size and iterations.
        self_supervision: train the localiser on the teacher's labels (false: task labels only;
            Fig. 2 middle / right); the teacher still selects the k states used at test time.
    """

    k: int | str = 7
    refit_every: int = 1
    kmeans_batch: int = 1024
    kmeans_iter: int = 50
    self_supervision: bool = True


@dataclass
class LossConfig:
    """Eq. 6: localisation + ``lambda_task`` * task cross-entropy.

    ``localisation``: ``ranking`` (Eq. 7) or ``cross_entropy`` (Remark 3); ``margin``: the 1 of
    Eq. 7; ``lambda_task``: paper 0.5 multi-task, 0 task-specific.
    """

    localisation: str = "ranking"
    margin: float = 1.0
    lambda_task: float = 0.5


@dataclass
class EvalConfig:
    """Key-step evaluation.

    Attributes:
        background: how a test frame becomes background (the paper leaves it open):
            ``none`` (default: every frame is assigned to one of the k selected states, as the
            teacher assigns every frame; surplus assignments cost precision, as in the paper's
            low F1), or ``unselected`` (background when the frame's best state over all M is not
            one of the task's k).
        baselines: the comparison rows to report (see the module docstring).
        seed: seeds the random baseline.
        background_label: the per-frame label that means background in reader datasets'
            ``frame_labels`` (CrossTask and ProceL readers: 0); None: such labels are not
            key-steps and only task accuracy is reported.
    """

    background: str = "none"
    background_label: int | None = 0
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    seed: int = 0


@dataclass
class SSPLConfig:
    """Everything an ``sspl`` run needs (``configs/sspl_*.yaml``)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig("rmsprop", 1e-3, 1e-4, "constant", 0)
    )
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, batch_size=1))
    eval: EvalConfig = field(default_factory=EvalConfig)


def _check(ok: bool, key: str, must: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"config key {key!r} must be {must}, got {value!r}")


# ------------------------------------------------------------------------------ helpers


def step_vocabulary(data) -> list[str]:
    """Sorted names of every ground-truth key-step of the data (global ids = positions)."""
    return sorted({str(s) for v in data.videos for s in (v.steps or ())})


def frame_truth(video, vocab: Mapping[str, int], background_label: int | None = 0) -> np.ndarray | None:
    """(T,) key-step id of each frame, -1 on background; None without step labels.

    Generated / scripted videos (``step_index`` and ``steps``): the global id of the step's name.
    Reader datasets (CrossTask, ProceL, folder ``frame_labels``, held as integer ``phases``):
    the label itself, ``background_label`` (CrossTask / ProceL: 0) -> -1; such ids need only be
    consistent within a task, as the matching is per task."""
    if video.step_index is None or video.steps is None:
        if video.phases is None or background_label is None:
            return None
        p = np.asarray(video.phases, dtype=np.int64)
        return np.where(p == background_label, -1, p)
    idx = np.asarray(video.step_index, dtype=np.int64)
    names = np.array([vocab[str(s)] for s in video.steps] + [-1], dtype=np.int64)
    return names[np.where(idx >= 0, idx, len(video.steps))]


def _pad(xs: list[np.ndarray]):
    import torch

    T = max(len(x) for x in xs)
    x = np.zeros((len(xs), T, xs[0].shape[1]), dtype=np.float32)
    mask = np.zeros((len(xs), T), dtype=bool)
    for i, v in enumerate(xs):
        x[i, : len(v)] = v
        mask[i, : len(v)] = True
    return torch.from_numpy(x), torch.from_numpy(mask)


def refit_teacher(
    model: SSPLModel, feats: list[np.ndarray], task_ids: np.ndarray, k: int, seed: int,
    kmeans_batch: int = 1024, kmeans_iter: int = 50,
) -> dict[str, Any]:
    """Refit the teacher held in ``model``'s buffers from attention features ``feats`` (one
    (T, D) array per training video) of tasks ``task_ids`` (one int per video)."""
    import torch

    allf = np.concatenate(feats)
    prev = model.centres.cpu().numpy() if int(model.refits) > 0 else None
    centres = T.fit_centres(allf, model.num_states, seed, prev, batch_size=kmeans_batch,
                            max_iter=kmeans_iter)
    selected = np.full(tuple(model.selected.shape), -1, dtype=np.int64)
    costs = []
    for a in range(selected.shape[0]):
        members = [i for i, t in enumerate(task_ids) if t == a]
        if not members:
            continue
        f = np.concatenate([feats[i] for i in members])
        vid = np.concatenate([np.full(len(feats[i]), i) for i in members])
        sel, cost = T.greedy_select(f, centres, k, vid)
        selected[a, : len(sel)] = sel
        costs.append(cost[-1])
    model.centres.copy_(torch.as_tensor(centres, dtype=model.centres.dtype))
    model.selected.copy_(torch.as_tensor(selected))
    model.refits += 1
    return {"cost": float(np.mean(costs)) if costs else float("nan")}


def _task_states(model: SSPLModel, task: int) -> np.ndarray:
    sel = model.selected[task].cpu().numpy()
    return sel[sel >= 0]


@dataclass
class Prediction:
    """Network outputs of one video: ``scores`` (T, M), ``probs`` (A,), ``f`` (T, D)."""

    scores: np.ndarray
    probs: np.ndarray
    f: np.ndarray


def predict(model: SSPLModel, xs: list[np.ndarray]) -> list[Prediction]:
    """Run the network on videos (T, R*D), one at a time (no padding effects)."""
    import torch

    dev = model.in_mean.device
    out = []
    with torch.no_grad():
        for x in xs:
            o = model(torch.as_tensor(np.array(x, np.float32), device=dev)[None])
            out.append(Prediction(o["scores"][0].double().cpu().numpy(),
                                  torch.softmax(o["logits"][0], 0).double().cpu().numpy(),
                                  o["f"][0].double().cpu().numpy()))
    return out


def key_steps_of(scores: np.ndarray, states: np.ndarray, background: str = "none") -> np.ndarray:
    """(T,) key-step state id per frame: argmax of scores (T, M) over ``states`` (k,);
    ``background="unselected"``: -1 where the best of all M states is not one of them."""
    if states.size == 0:
        raise ValueError("the task has no selected key-steps (was the run trained?)")
    pred = states[scores[:, states].argmax(1)]
    if background == "unselected":
        pred = np.where(np.isin(scores.argmax(1), states), pred, -1)
    return pred


def spans(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """Runs of equal labels: (label, first frame, last frame) in order."""
    out = []
    start = 0
    for t in range(1, len(labels) + 1):
        if t == len(labels) or labels[t] != labels[start]:
            out.append((int(labels[start]), start, t - 1))
            start = t
    return out


# ------------------------------------------------------------------------------ recipe


class SSPLRecipe(Recipe):
    """``procalign train sspl``: one model for all tasks (multi-task procedure learning)."""

    name = "sspl"
    config_cls = SSPLConfig
    protocols = ("keystep",)
    auto_steps = (("teacher.k", "model.num_states"),)
    same_means = "task"

    def validate(self, cfg: SSPLConfig) -> None:
        super().validate(cfg)
        m, te, lo, e = cfg.model, cfg.teacher, cfg.loss, cfg.eval
        _check(cfg.data.regions is None or cfg.data.regions >= 1, "data.regions", "None or >= 1",
               cfg.data.regions)
        for key in ("num_states", "hidden", "kernel"):
            _check(getattr(m, key) >= 1, f"model.{key}", ">= 1", getattr(m, key))
        _check(m.kernel % 2 == 1, "model.kernel", "odd", m.kernel)
        _check(0 <= m.levels <= 6, "model.levels", "in [0, 6]", m.levels)
        _check(m.pooling in POOLINGS, "model.pooling", f"one of {POOLINGS}", m.pooling)
        _check(m.input_norm in INPUT_NORMS, "model.input_norm", f"one of {INPUT_NORMS}",
               m.input_norm)
        check_int_or_auto(te.k, "teacher.k")
        if not is_auto(te.k) and te.k > m.num_states:
            raise ValueError(
                f"config key 'teacher.k' ({te.k}) must be <= 'model.num_states' ({m.num_states}): "
                "the k key-steps of a task are selected among the M k-means centres"
            )
        _check(te.refit_every >= 1, "teacher.refit_every", ">= 1", te.refit_every)
        _check(te.kmeans_batch >= 1 and te.kmeans_iter >= 1, "teacher.kmeans_batch/kmeans_iter",
               ">= 1", (te.kmeans_batch, te.kmeans_iter))
        _check(lo.localisation in LOCALISATION_LOSSES, "loss.localisation",
               f"one of {LOCALISATION_LOSSES}", lo.localisation)
        _check(lo.lambda_task >= 0, "loss.lambda_task", ">= 0", lo.lambda_task)
        _check(lo.margin > 0, "loss.margin", "> 0", lo.margin)
        if not te.self_supervision and lo.lambda_task == 0:
            raise ValueError("config keys 'teacher.self_supervision' = false and 'loss.lambda_task' "
                             "= 0 leave nothing to train")
        _check(e.background in BACKGROUND_RULES, "eval.background", f"one of {BACKGROUND_RULES}",
               e.background)
        for b in e.baselines:
            _check(b in BASELINES, "eval.baselines entry", f"one of {BASELINES}", b)

    def regions(self, cfg: SSPLConfig, data) -> int:
        r = cfg.data.regions or getattr(data, "regions", 1)
        if data.in_dim % r:
            raise ValueError(f"data.regions = {r} does not divide the input width {data.in_dim}")
        return int(r)

    def load_data(self, cfg: SSPLConfig, run_dir, progress: bool):
        """The run's videos, each labelled by its *task*: a folder's ``task`` column when it
        has one (its ``label`` is then the procedure, several per task), else the label."""
        from dataclasses import replace

        data = super().load_data(cfg, run_dir, progress)
        if data.videos and all(v.task for v in data.videos) and any(
            str(v.task) != str(v.label) for v in data.videos
        ):
            data = replace(data, videos=[replace(v, label=str(v.task)) for v in data.videos])
        return data

    def min_frames(self, cfg: SSPLConfig) -> tuple[int, str]:
        return 1, ""

    def describe(self, cfg: SSPLConfig, data) -> dict[str, Any]:
        missing = [v.video_id for v in data.videos if v.label is None][:3]
        if missing:
            raise ValueError(f"videos {missing} have no task label (sspl learns from task labels)")
        tasks = data.labels(cfg.data.train_split)
        train = data.split(cfg.data.train_split)
        frames = sum(len(v.features) for v in train)
        if frames < cfg.model.num_states:
            raise ValueError(
                f"the training videos have {frames} frames in all, fewer than the "
                f"M = {cfg.model.num_states} k-means centres (model.num_states)"
            )
        return {**data.info(), "classes": tasks, "regions": self.regions(cfg, data)}

    def build(self, cfg: SSPLConfig, info: Mapping[str, Any]) -> dict[str, nn.Module]:
        import torch

        torch.manual_seed(cfg.train.seed)
        m = cfg.model
        return {"": SSPLModel(
            int(info["in_dim"]), int(info.get("regions", 1)), len(info["classes"]), m.num_states,
            cfg.teacher.k, hidden=m.hidden, levels=m.levels, kernel=m.kernel,
            attention=m.attention, learned_pooling=m.learned_pooling, pooling=m.pooling,
            input_norm=m.input_norm,
        )}

    def trainer(self, cfg: SSPLConfig, data, info, part: str, model: SSPLModel) -> TrainSpec:
        import torch

        tasks = list(info["classes"])
        train = sorted(data.split(cfg.data.train_split), key=lambda v: v.video_id)
        xs = [np.asarray(v.features, np.float32) for v in train]
        task_ids = np.array([tasks.index(v.label) for v in train])
        model.set_input_stats(xs)
        te, lo, seed = cfg.teacher, cfg.loss, cfg.train.seed
        loc = T.ranking_loss if lo.localisation == "ranking" else T.state_cross_entropy
        loc_args = {"margin": lo.margin} if lo.localisation == "ranking" else {}

        def batches(epoch: int) -> list[dict[str, Any]]:
            was = model.training
            model.eval()
            feats = model.features(xs)
            if int(model.refits) == 0 or epoch % te.refit_every == 0:
                refit_teacher(model, feats, task_ids, te.k, seed * 1000 + epoch,
                              te.kmeans_batch, te.kmeans_iter)
            centres = model.centres.cpu().numpy()
            labels = [T.assign(f, centres, _task_states(model, a)) for f, a in zip(feats, task_ids)]
            model.train(was)
            order = np.random.default_rng([seed, epoch]).permutation(len(xs))
            out = []
            for s in range(0, len(order), cfg.train.batch_size):
                idx = order[s : s + cfg.train.batch_size]
                x, mask = _pad([xs[i] for i in idx])
                lab = torch.full(mask.shape, -1, dtype=torch.long)
                for j, i in enumerate(idx):
                    lab[j, : len(labels[i])] = torch.from_numpy(labels[i])
                out.append({"x": x, "mask": mask, "labels": lab,
                            "task": torch.as_tensor(task_ids[idx], dtype=torch.long)})
            return out

        def loss_fn(m: SSPLModel, batch):
            o = m(batch["x"], batch["mask"])
            logs = {}
            total = torch.zeros((), device=o["scores"].device)
            if te.self_supervision:
                lterm = loc(o["scores"], batch["labels"], batch["mask"], **loc_args)
                total = total + lterm
                logs["localisation"] = float(lterm.detach())
            ce = nn.functional.cross_entropy(o["logits"], batch["task"])
            total = total + lo.lambda_task * ce
            logs["task_ce"] = float(ce.detach())
            logs["task_acc"] = float((o["logits"].argmax(1) == batch["task"]).float().mean())
            return total, logs

        summary = {"train_videos": len(train), "tasks": len(tasks), "k": te.k,
                   "num_states": cfg.model.num_states, "regions": model.regions}
        eval_fn, select = self.validation(cfg, data, tasks)
        if eval_fn is not None:
            summary["val_videos"] = len(data.split("val"))
        return TrainSpec(loss_fn, batches, seed, cfg.optim, cfg.train.epochs,
                         {"in_dim": str(data.in_dim), "regions": str(model.regions)},
                         eval_fn, summary=summary, select=select)

    def validation(self, cfg: SSPLConfig, data, tasks: list[str]):
        """(eval_fn, select) on the held-out training videos (``train.val_fraction``), else
        (None, None). Each evaluation reports the validation videos' task accuracy and, when
        they have step labels, the frame F1 of the key-steps of their true task (the test
        protocol); the run keeps the epoch of the best F1 (``val_f1``), which is the only use of
        step labels in training. Without step labels nothing is selected (task accuracy
        saturates within a few epochs: it cannot tell epochs apart) and the last epoch is kept."""
        val = [v for v in sorted(data.split("val"), key=lambda v: v.video_id) if v.label in tasks]
        if not val:
            return None, None
        vocab = {s: i for i, s in enumerate(step_vocabulary(data))}
        truth = [frame_truth(v, vocab, cfg.eval.background_label) for v in val]
        labelled = all(t is not None for t in truth)
        xs = [np.asarray(v.features, np.float32) for v in val]
        true_task = [tasks.index(v.label) for v in val]
        bg = cfg.eval.background

        def eval_fn(m: SSPLModel, epoch: int) -> dict[str, float]:
            preds = predict(m, xs)
            out = {"val_task_acc": task_accuracy([int(p.probs.argmax()) for p in preds], true_task)}
            if labelled:
                pred = [key_steps_of(p.scores, _task_states(m, a), bg) for p, a in zip(preds, true_task)]
                out["val_f1"] = float(keystep_scores(pred, truth, [tasks[a] for a in true_task])["f1"])
            return out

        return eval_fn, ("val_f1" if labelled else None)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, cfg: SSPLConfig, data, models, info, progress) -> dict[str, Any]:
        model: SSPLModel = models[""]
        tasks = list(info["classes"])
        test = [v for v in sorted(data.split(cfg.data.test_split), key=lambda v: v.video_id)
                if v.label in tasks]
        if not test:
            raise ValueError(f"no test videos of the training tasks in {data.description}")
        vocab = {s: i for i, s in enumerate(step_vocabulary(data))}
        truth = [frame_truth(v, vocab, cfg.eval.background_label) for v in test]
        xs = [np.asarray(v.features, np.float32) for v in test]
        true_task = [tasks.index(v.label) for v in test]
        preds = predict(model, xs)
        pred_task = [int(p.probs.argmax()) for p in preds]
        k, bg = cfg.teacher.k, cfg.eval.background
        rows = [row("task_accuracy", task_accuracy(pred_task, true_task), "sspl,per_video",
                    model="sspl")]
        report: dict[str, Any] = {"task": "keystep", "classes": tasks, "k": k, "background": bg,
                                  "teacher_refits": int(model.refits), "warnings": []}
        if any(t is None for t in truth):
            report["warnings"].append("test videos without key-step labels: only task accuracy")
            report["metrics"] = rows
            return report
        outputs: dict[str, list[np.ndarray]] = {}
        for source, tids in (("true_task", true_task), ("predicted_task", pred_task)):
            outputs[f"sspl,{source}"] = [
                key_steps_of(p.scores, _task_states(model, a), bg) for p, a in zip(preds, tids)
            ]
        rng = np.random.default_rng([cfg.eval.seed, 7])
        for b in cfg.eval.baselines:
            if b == "random":
                outputs["random"] = [rng.integers(0, k, len(x)) for x in xs]
            elif b == "uniform":
                outputs["uniform"] = [np.minimum(np.arange(len(x)) * k // len(x), k - 1) for x in xs]
            elif b == "teacher_final":
                c = model.centres.cpu().numpy()
                outputs["teacher_final"] = [T.assign(p.f, c, _task_states(model, a))
                                            for p, a in zip(preds, true_task)]
            elif b == "teacher_initial":
                outputs["teacher_initial"] = self.initial_teacher(cfg, data, model, tasks, xs,
                                                                  true_task)
        rows += self.diagnostics(model, test, preds, outputs, xs)
        per_task = {}
        for name, pred in outputs.items():
            s = keystep_scores(pred, truth, [tasks[a] for a in true_task])
            variant = f"{name},k={k},bg={bg}"
            for metric in ("recall", "precision", "f1", "iou", "mof"):
                rows.append(row(metric, s[metric], variant, model=name.split(",")[0]))
            per_task[name] = {t: {"recall": v["recall"], "f1": v["f1"],
                                  "matching": {str(p): g for p, g in v["matching"].items()}}
                              for t, v in s["per_task"].items()}
        report.update({"metrics": rows, "per_task": per_task, "step_names": list(vocab)})
        return report

    def diagnostics(self, model: SSPLModel, test, preds, outputs, xs) -> list[dict]:
        """Why the network does (not) beat its teacher: agreement of the network's key-steps
        with the final teacher's on test frames, and (simulated data, where the key-step regions
        are known) the attention mass on the regions that show the key-step."""
        import torch

        rows = []
        if "teacher_final" in outputs:
            agree = np.concatenate([a == b for a, b in zip(outputs["sspl,true_task"],
                                                           outputs["teacher_final"])])
            rows.append(row("agreement_with_teacher", float(agree.mean()),
                            "sspl,true_task_vs_teacher_final,frames", model="sspl"))
        ev = [getattr(v, "evidence", None) for v in test]
        if model.regions > 1 and all(e is not None for e in ev):
            mass, chance = [], []
            with torch.no_grad():
                for x, e in zip(xs, ev):
                    y = model.regions_of(torch.as_tensor(x, device=model.in_mean.device)[None])
                    alpha = model.attend(y)[1][0].double().cpu().numpy()
                    on = e.any(1)
                    if on.any():
                        mass.append((alpha[on] * e[on]).sum(1))
                        chance.append(e[on].sum(1) / model.regions)
            if mass:
                rows.append(row("attention_on_evidence", float(np.concatenate(mass).mean()),
                                "sspl,key-step frames,uniform=" +
                                f"{float(np.concatenate(chance).mean()):.3f}", model="sspl"))
        return rows

    def initial_teacher(self, cfg, data, model: SSPLModel, tasks, xs, true_task):
        """Teacher alone: k-means + selection on the mean region of standardised training
        inputs (the features before any learning), test frames to the nearest selected state."""
        import torch

        def mean_region(x):
            with torch.no_grad():
                y = model.regions_of(torch.as_tensor(np.array(x, np.float32),
                                                     device=model.in_mean.device)[None])
            return y.mean(2)[0].double().cpu().numpy()

        train = sorted(data.split(cfg.data.train_split), key=lambda v: v.video_id)
        feats = [mean_region(v.features) for v in train]
        tids = np.array([tasks.index(v.label) for v in train])
        probe = SSPLModel(model.regions * model.dim, model.regions, len(tasks), model.num_states,
                          cfg.teacher.k)
        refit_teacher(probe, feats, tids, cfg.teacher.k, cfg.train.seed * 1000,
                      cfg.teacher.kmeans_batch, cfg.teacher.kmeans_iter)
        c = probe.centres.numpy()
        return [T.assign(mean_region(x), c, _task_states(probe, a)) for x, a in zip(xs, true_task)]

    def key_steps(self, cfg: SSPLConfig, models, info, x: np.ndarray, task: str | None = None):
        """Discovered key-steps of one video x (T, R*D): predicted task, per-frame state ids
        (of ``task``'s key-steps if given, else of the predicted task's) and their spans."""
        model: SSPLModel = models[""]
        tasks = list(info["classes"])
        p = predict(model, [x])[0]
        pred = tasks[int(p.probs.argmax())]
        use = task if task is not None else pred
        if use not in tasks:
            raise ValueError(f"task {use!r} is not one of the run's tasks {tasks}")
        labels = key_steps_of(p.scores, _task_states(model, tasks.index(use)), cfg.eval.background)
        return {"predicted_task": pred, "task_probability": float(p.probs.max()), "task": use,
                "labels": labels, "spans": spans(labels)}

    @torch.no_grad()
    def report_frames(self, cfg: SSPLConfig, models, info, x: np.ndarray) -> np.ndarray:
        """The attention features f_t (Eq. 1) of every frame."""
        model = models[""]
        model.eval()
        return model.features([x])[0]

    def finish(self, cfg: SSPLConfig, data, models, run_dir: Path) -> dict[str, Any]:
        """The verify threshold at the EER point of training pairs (:meth:`Recipe.pair_threshold`;
        SSPL's labels are tasks, so "same" means the same task)."""
        return {"threshold": self.pair_threshold(cfg, data, models, run_dir)}

    def pair_distances(self, cfg: SSPLConfig, data, models, info, pairs) -> np.ndarray:
        ids = sorted({p.video_id_1 for p in pairs} | {p.video_id_2 for p in pairs})
        probs = dict(zip(ids, (p.probs for p in predict(
            models[""], [np.asarray(data.get(i).features) for i in ids]))))
        return np.array([float(np.linalg.norm(probs[p.video_id_1] - probs[p.video_id_2]))
                         for p in pairs])

    def verify(self, cfg: SSPLConfig, models, info, a, b, threshold, **_) -> dict[str, Any]:
        """Euclidean distance between the two videos' task probability vectors."""
        pa, pb = predict(models[""], [a, b])
        dist = float(np.linalg.norm(pa.probs - pb.probs))
        tasks = list(info["classes"])
        return {"distance": dist, "threshold": threshold,
                "same": None if threshold is None else bool(dist <= threshold),
                "embedding": "task_probabilities",
                "predicted_tasks": [tasks[int(pa.probs.argmax())], tasks[int(pb.probs.argmax())]]}


@METHODS.register("sspl")
def _recipe() -> SSPLRecipe:
    return SSPLRecipe()
