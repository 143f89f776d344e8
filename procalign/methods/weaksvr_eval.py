"""WeakSVR's text side (sentence and paragraph embeddings) and its evaluation protocols.

Split from :mod:`procalign.methods.weaksvr` (the recipe): the :class:`TextBank` of sentence and
paragraph embeddings, the video embedding surface, SVIP clip verification distances,
text-to-video matching (CSV-Matching or sampled queries) and the fine head's frame -> step
accuracy. Shapes: ``B`` videos, ``N`` sampled frames, ``K`` steps, ``D`` the text space.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from procalign.data import featureset as fset
from procalign.eval import protocols as P
from procalign.losses import weaksvr as L
from procalign.methods import baselines as BL
from procalign.models.weaksvr import WeakSVRModel

if TYPE_CHECKING:
    from procalign.methods.weaksvr import WeakSVRConfig

# ----------------------------------------------------------------------------- text


class TextBank:
    """Sentence and paragraph embeddings of every step list in the data, encoded once."""

    def __init__(self, cfg: WeakSVRConfig, step_lists: Sequence[Sequence[str]]) -> None:
        from procalign.models.text import build_text_encoder, default_cache_dir, encode_texts

        m = cfg.model
        self.encoder = build_text_encoder(m.text_encoder, **dict(m.text_encoder_args))
        lists = sorted({tuple(s) for s in step_lists})
        sentences = sorted({s for steps in lists for s in steps})
        emb = encode_texts(sentences, self.encoder, default_cache_dir())
        self.sentence = dict(zip(sentences, emb))
        self.dim = int(self.encoder.dim)
        self.mode = m.paragraph
        self.paragraph = dict(zip(lists, paragraph_vectors(cfg, lists, self.encoder, self.sentence)))

    def steps(self, lists: Sequence[Sequence[str]]) -> tuple[Tensor, Tensor]:
        """(B,) step lists -> sentences (B, K, D_text) zero-padded, step counts (B,)."""
        K = max(len(s) for s in lists)
        S = np.zeros((len(lists), K, self.dim), np.float32)
        for b, steps in enumerate(lists):
            S[b, : len(steps)] = [self.sentence[s] for s in steps]
        return torch.from_numpy(S), torch.tensor([len(s) for s in lists])

    def paragraphs(self, lists: Sequence[Sequence[str]]) -> Tensor:
        return torch.from_numpy(np.stack([self.paragraph[tuple(s)] for s in lists]))


def paragraph_vectors(cfg: WeakSVRConfig, lists: Sequence[Sequence[str]], encoder: Any = None,
                      sentence: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """(P,) step lists -> (P, D_text) unit paragraph embeddings (``model.paragraph``)."""
    from procalign.models.text import build_text_encoder, default_cache_dir, encode_texts

    enc = encoder or build_text_encoder(cfg.model.text_encoder, **dict(cfg.model.text_encoder_args))
    if not lists:
        return np.zeros((0, enc.dim), np.float32)
    if cfg.model.paragraph == "text":
        return encode_texts([_paragraph(s) for s in lists], enc, default_cache_dir())
    if sentence is None:
        uniq = sorted({x for s in lists for x in s})
        sentence = dict(zip(uniq, encode_texts(uniq, enc, default_cache_dir())))
    K = max(len(s) for s in lists)
    R = position_rotations(K, enc.dim)
    out = np.stack([sum(R[k] @ sentence[x] for k, x in enumerate(s)) for s in lists])
    return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def position_rotations(K: int, D: int, seed: int = 1234) -> np.ndarray:
    """(K, D, D) fixed random orthogonal matrices, one per step position (seeded, so every run
    and machine binds positions alike)."""
    out = np.empty((K, D, D))
    for k in range(K):
        q, r = np.linalg.qr(np.random.default_rng([seed, D, k]).normal(size=(D, D)))
        out[k] = q * np.sign(np.diag(r))[None, :]
    return out


def _paragraph(steps: Sequence[str]) -> str:
    from procalign.models.text import paragraph

    return paragraph(steps)


def text_encoder_info(cfg: WeakSVRConfig) -> dict[str, Any]:
    from procalign.models.text import build_text_encoder

    enc = build_text_encoder(cfg.model.text_encoder, **dict(cfg.model.text_encoder_args))
    return {"text_dim": enc.dim, "text_encoder": enc.weights_id, "text_pretrained": enc.pretrained}


# ----------------------------------------------------------------------------- evaluation


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _video_embed(model: WeakSVRModel):
    """``(C, N, D_in)`` clips -> ``(C, 1, D_text)`` l2-normalised video embeddings."""
    dev = _device(model)

    def embed(x: Tensor) -> Tensor:
        model.eval()
        return F.normalize(model.video(x.to(dev)), dim=-1)[:, None, :]

    return embed


def _v_distance(a: Tensor, b: Tensor) -> Tensor:
    """Eq. 14: Euclidean distance of l2-normalised video embeddings, (B, 1, D) pairs -> (B,)."""
    return (F.normalize(a[:, 0], dim=-1) - F.normalize(b[:, 0], dim=-1)).norm(dim=-1)


def distances(cfg: WeakSVRConfig) -> list[P.Distance]:
    out = []
    for name in cfg.eval.distances:
        if name == "weaksvr":
            out.append(P.Distance("weaksvr", _v_distance, False, "l2_normalised_v"))
        else:
            out.append(P.Distance(name, BL.BASELINES[name.removeprefix("raw_")], True, ""))
    return out


def _clip_args(cfg: WeakSVRConfig) -> dict[str, Any]:
    d = cfg.data
    return {"T": d.num_frames, "offsets": d.clip_offsets, "boundaries": d.boundaries,
            "batch_size": cfg.eval.batch_size}


@torch.no_grad()
def video_vectors(model: WeakSVRModel, cfg: WeakSVRConfig, xs: Sequence[np.ndarray]) -> Tensor:
    """(V,) videos (L, D_in) -> (V, D_text): the unit mean of the clips' normalised v."""
    clips = torch.from_numpy(np.stack([
        P.clip_features(np.asarray(x), cfg.data.num_frames, cfg.data.clip_offsets,
                        cfg.data.boundaries) for x in xs
    ]))
    emb = P.embed_clips(_video_embed(model), clips, cfg.eval.batch_size)  # (V, C, 1, D)
    return F.normalize(emb[:, :, 0].mean(1), dim=-1).cpu()


def matching_queries(cfg: WeakSVRConfig, data: fset.FeatureSet) -> tuple[list, str, list[str]]:
    """(queries (label, steps, candidate ids, answer index), source, notes)."""
    from procalign.data.records import MatchingQuery

    e, notes = cfg.eval, []
    test = data.split(e.split)
    by_id = {v.video_id: v for v in test}
    if e.matching in ("auto", "dataset") and cfg.data.dataset == "svip-csv":
        from procalign.data import load

        root = fset._default_root(cfg.data, "svip/CSV")
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = load("csv-matching", root)
        notes += [str(w.message) for w in caught]
        kept = [q for q in ds.queries
                if q.answer is not None and all(c in by_id for c in q.candidates)]
        if len(kept) < len(ds.queries):
            notes.append(f"csv-matching: {len(ds.queries) - len(kept)} of {len(ds.queries)} "
                         "queries dropped (a candidate outside the data, or no single answer)")
        bank = ds.meta.get("label_bank", {})
        out = [(q.label, tuple(bank.get(q.label) or by_id[q.candidates[q.answer]].steps),
                q.candidates, q.answer) for q in kept]
        return out, f"CSV-Matching query file {ds.meta['file']} ({len(out)} queries)", notes
    if e.matching == "dataset":
        raise ValueError("eval.matching=dataset needs data.dataset=svip-csv (the CSV-Matching file)")
    rng = np.random.default_rng(cfg.train.seed + 23)
    labels = sorted({v.label for v in test if v.steps})
    if len(labels) < 2:
        return [], "none (fewer than 2 procedures in the split)", notes
    out = []
    for q in range(e.num_queries):
        label = labels[q % len(labels)]
        own = [v for v in test if v.label == label]
        task = own[0].task
        others = [v for v in test if v.label != label and v.task == task]
        if len(others) < e.candidates - 1:
            others = [v for v in test if v.label != label]
        pick = rng.choice(len(others), size=min(e.candidates - 1, len(others)), replace=False)
        cands = [own[int(rng.integers(len(own)))]] + [others[int(i)] for i in pick]
        perm = rng.permutation(len(cands))
        ids = tuple(cands[i].video_id for i in perm)
        out.append(MatchingQuery(label, ids, int(np.flatnonzero(perm == 0)[0])))
    out = [(q.label, tuple(by_id[q.candidates[q.answer]].steps), q.candidates, q.answer)
           for q in out]
    return out, f"{len(out)} queries sampled from split {e.split!r} (seed {cfg.train.seed + 23})", notes


def text_matching(model: WeakSVRModel, cfg: WeakSVRConfig, data: fset.FeatureSet,
                  bank_text: Any = None) -> dict[str, Any]:
    """Rows (accuracy, top-k, AUC) of text-to-video matching by cosine(v, paragraph)."""
    from procalign.eval.matching import text_video_matching
    from procalign.eval.report import row
    from procalign.models.text import build_text_encoder

    queries, source, notes = matching_queries(cfg, data)
    if not queries:
        return {"metrics": [], "source": source, "notes": notes}
    ids = sorted({c for q in queries for c in q[2]})
    vecs = video_vectors(model, cfg, [data.get(i).features for i in ids])
    index = {v: i for i, v in enumerate(ids)}
    enc = build_text_encoder(cfg.model.text_encoder, **dict(cfg.model.text_encoder_args))
    texts = torch.from_numpy(paragraph_vectors(cfg, [q[1] for q in queries], enc))
    C = min(len(q[2]) for q in queries)
    scores = np.stack([
        (vecs[[index[c] for c in q[2][:C]]] @ F.normalize(texts[i], dim=0)).numpy()
        for i, q in enumerate(queries)
    ])
    answers = np.array([q[3] for q in queries])
    keep = answers < C
    ks = [k for k in cfg.eval.topk if 1 <= k <= C]
    res = text_video_matching(scores[keep], answers[keep], ks)
    variant = f"matching,{C}_candidates,cosine(v,paragraph)"
    rows = [row("matching_accuracy", res["accuracy"], variant, distance="weaksvr"),
            row("matching_auc", res["auc"], variant, distance="weaksvr")]
    rows += [row(f"matching_top{k}", v, variant, distance="weaksvr") for k, v in res["top_k"].items()]
    return {"metrics": rows, "source": source, "notes": notes, "num_queries": int(keep.sum())}


@torch.no_grad()
def fine_alignment(model: WeakSVRModel, cfg: WeakSVRConfig, data: fset.FeatureSet,
                   bank: TextBank, split: str) -> list[dict]:
    """Does the fine head align frames with their own step sentences? Rows (when the videos
    carry frame-level script positions, e.g. synthetic data): the share of non-background
    frames of the centre clip whose most similar sentence of the video's own step list
    (``argmax``) / whose monotone labelling (``viterbi``, :func:`procalign.dp.step_viterbi`) is
    the true script position; ``chance`` = the mean of 1 / K."""
    from procalign.data.sampling import segment_indices
    from procalign.eval.report import row

    vids = [v for v in data.split(split) if v.step_index is not None and v.steps]
    if not vids:
        return []
    d = cfg.data
    c = P.centre_clip(d.clip_offsets)
    hits = {"argmax": [], "viterbi": []}
    chance = []
    model.eval()
    for v in vids:
        rows = segment_indices(len(v.features), d.num_frames, d.clip_offsets[c], boundaries=d.boundaries)
        x = torch.from_numpy(np.asarray(v.features[rows], np.float32))[None].to(_device(model))
        H = model.embed(x)
        S, k = bank.steps([tuple(v.steps)])
        sim = L.cosine_matrix(H.cpu(), S)  # (1, N, K)
        truth = np.asarray(v.step_index)[rows]
        ok = truth >= 0
        if not ok.any():
            continue
        hits["argmax"] += list(sim[0].argmax(-1).numpy()[ok] == truth[ok])
        hits["viterbi"] += list(L.viterbi_labels(sim, k)[0].numpy()[ok] == truth[ok])
        chance.append(1.0 / len(v.steps))
    variant = f"fine_head,centre_clip,N={d.num_frames},own_steps"
    out = [row("fine_step_accuracy", float(np.mean(h)), f"{variant},{name}", distance="weaksvr")
           for name, h in hits.items() if h]
    if chance:
        out.append(row("fine_step_accuracy", float(np.mean(chance)), f"{variant},chance",
                       distance="chance"))
    return out


