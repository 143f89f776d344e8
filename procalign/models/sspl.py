"""Procedure learning network (Elhamifar & Huynh, ECCV 2020): attention, key-step localisation,
key-step pooling and task classification.

``SSPLModel(x, mask)`` with x (B, T, R * D) flattened region features (region r in columns
``r*D:(r+1)*D``) and mask (B, T) valid frames returns a dict:

* ``alpha`` (B, T, R): spatial attention, Eq. 1 (softmax over R of a tanh MLP; R = 1 or
  ``attention=False``: uniform weights 1/R, i.e. the mean region);
* ``f`` (B, T, D): attention features f_t = sum_r alpha_r y_{t,r};
* ``scores`` (B, T, M): raw key-step scores s of the 1-D fully convolutional encoder-decoder
  (KLN: conv + max-pool per level, transposed conv back up with skip connections, FCN style);
* ``p`` (B, T, M): Eq. 3, softmax over the M states per frame;
* ``h`` (B, M, D): key-step features, Eq. 4: ``pooling="average"`` divides sum_t p_{m,t} f_t by
  sum_t p_{m,t} (the text's "weighted average"); ``"sum"`` is the equation as printed;
* ``beta`` (B, M): Eq. 5, softmax over m of a tanh MLP of h_m (``learned_pooling=False``:
  uniform 1/M);
* ``logits`` (B, A): one linear layer on sum_m beta_m h_m.

Buffers (saved with the weights): input standardisation ``in_mean``/``in_std`` (D,), and the
teacher state: ``centres`` (M, D), ``selected`` (A, k) state ids of each task's key-steps (-1 =
unused slot), ``refits`` (number of teacher refits so far).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["SSPLModel", "TinyMLP"]

POOLINGS = ("average", "sum")
#: per-video input normalisation after the dataset standardisation (``regions_of``)
INPUT_NORMS = ("dataset", "center", "standardize")


class TinyMLP(nn.Module):
    """Linear(D, D) -> tanh -> Linear(D, 1): one scalar per vector (paper: hidden = input width)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., D) -> (...)
        return self.out(torch.tanh(self.hidden(x))).squeeze(-1)


class SSPLModel(nn.Module):
    def __init__(
        self,
        in_dim: int,
        regions: int,
        num_tasks: int,
        num_states: int,
        k: int,
        *,
        hidden: int = 64,
        levels: int = 2,
        kernel: int = 5,
        attention: bool = True,
        learned_pooling: bool = True,
        pooling: str = "average",
        input_norm: str = "dataset",
    ) -> None:
        super().__init__()
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")
        self.input_norm = input_norm
        if regions < 1 or in_dim % regions:
            raise ValueError(f"input width {in_dim} is not R x D for R = {regions} regions")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if kernel % 2 == 0 or kernel < 1:
            raise ValueError(f"kernel must be odd, got {kernel}")
        D = in_dim // regions
        self.regions, self.dim, self.num_states, self.levels = regions, D, num_states, levels
        self.use_attention = attention and regions > 1
        self.learned_pooling = learned_pooling
        self.pooling = pooling
        self.attn = TinyMLP(D) if self.use_attention else None
        self.down = nn.ModuleList()
        c = D
        for _ in range(levels):
            self.down.append(nn.Conv1d(c, hidden, kernel, padding=kernel // 2))
            c = hidden
        self.middle = nn.Conv1d(c, hidden, kernel, padding=kernel // 2)
        self.up = nn.ModuleList(nn.ConvTranspose1d(hidden, hidden, 2, stride=2) for _ in range(levels))
        self.head = nn.Conv1d(hidden, num_states, 1)
        self.beta_mlp = TinyMLP(D) if learned_pooling else None
        self.classifier = nn.Linear(D, num_tasks)
        self.register_buffer("in_mean", torch.zeros(D))
        self.register_buffer("in_std", torch.ones(D))
        self.register_buffer("centres", torch.zeros(num_states, D, dtype=torch.float64))
        self.register_buffer("selected", torch.full((num_tasks, k), -1, dtype=torch.long))
        self.register_buffer("refits", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------ inputs
    def set_input_stats(self, videos: Sequence[np.ndarray]) -> None:
        """Per-dimension mean / std over every region of every frame of ``videos`` (T, R*D)."""
        x = np.concatenate([np.asarray(v, np.float64).reshape(-1, self.dim) for v in videos])
        self.in_mean.copy_(torch.as_tensor(x.mean(0), dtype=self.in_mean.dtype))
        self.in_std.copy_(torch.as_tensor(np.maximum(x.std(0), 1e-6), dtype=self.in_std.dtype))

    def regions_of(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, R*D), mask (B, T) valid frames -> standardised (B, T, R, D): by the training
        set's per-dimension mean / std (:meth:`standardised`), then (``input_norm``) per video
        over its valid frames (:meth:`per_video`)."""
        return self.per_video(self.standardised(x), mask)

    def standardised(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, R*D) -> (B, T, R, D) standardised by the training set's mean / std only."""
        if x.ndim != 3 or x.shape[2] != self.regions * self.dim:
            raise ValueError(
                f"x must be (B, T, R*D) = (B, T, {self.regions * self.dim}), got {tuple(x.shape)}"
            )
        return (x.reshape(*x.shape[:2], self.regions, self.dim) - self.in_mean) / self.in_std

    def per_video(self, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``input_norm`` over each video's valid frames of y (B, T, R, D): ``center``
        subtracts the video's mean frame, ``standardize`` also divides by its per-dimension std
        (subject, camera and lighting offsets); ``dataset`` returns y itself."""
        if self.input_norm == "dataset":
            return y
        w = (torch.ones(y.shape[:2], device=y.device) if mask is None else mask.to(y.dtype))
        w = w[:, :, None, None]
        n = w.sum(1, keepdim=True).clamp(min=1.0)
        y = y - (y * w).sum(1, keepdim=True) / n
        if self.input_norm == "standardize":
            y = y / ((y * y * w).sum(1, keepdim=True) / n).sqrt().clamp(min=1e-3)
        return y

    # ------------------------------------------------------------------ parts
    def attend(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 1: y (B, T, R, D) -> (f (B, T, D), alpha (B, T, R))."""
        if self.attn is None:
            alpha = torch.full(y.shape[:3], 1.0 / y.shape[2], dtype=y.dtype, device=y.device)
        else:
            alpha = torch.softmax(self.attn(y), dim=2)
        return (alpha.unsqueeze(3) * y).sum(2), alpha

    def localise(self, f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """KLN: f (B, T, D), mask (B, T) -> raw scores (B, T, M)."""
        T = f.shape[1]
        step = 2 ** self.levels
        pad = (-T) % step
        z = (f * mask.unsqueeze(2)).transpose(1, 2)
        if pad:
            z = nn.functional.pad(z, (0, pad))
        skips = []
        for conv in self.down:
            z = torch.relu(conv(z))
            skips.append(z)
            z = nn.functional.max_pool1d(z, 2)
        z = torch.relu(self.middle(z))
        for up, skip in zip(self.up, reversed(skips)):
            z = torch.relu(up(z)) + skip
        return self.head(z)[:, :, :T].transpose(1, 2)

    def pool(self, f: torch.Tensor, p: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Eq. 4: f (B, T, D), p (B, T, M), mask (B, T) -> h (B, M, D)."""
        w = p * mask.unsqueeze(2).to(p.dtype)
        h = torch.einsum("btm,btd->bmd", w, f)
        if self.pooling == "average":
            h = h / w.sum(1).clamp(min=1e-8).unsqueeze(2)
        return h

    def weigh(self, h: torch.Tensor) -> torch.Tensor:
        """Eq. 5: h (B, M, D) -> beta (B, M)."""
        if self.beta_mlp is None:
            return torch.full(h.shape[:2], 1.0 / h.shape[1], dtype=h.dtype, device=h.device)
        return torch.softmax(self.beta_mlp(h), dim=1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        y0 = self.standardised(x)
        y = self.per_video(y0, mask)
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        f, alpha = self.attend(y)
        scores = self.localise(f, mask)
        p = torch.softmax(scores, dim=2)
        # the task classifier pools the dataset-standardised frames with the same attention and
        # state probabilities: a per-video normalisation helps find the steps but also removes
        # what a task's mean frame carries
        fc = f if y is y0 else (alpha.unsqueeze(3) * y0).sum(2)
        h = self.pool(fc, p, mask)
        beta = self.weigh(h)
        logits = self.classifier((beta.unsqueeze(2) * h).sum(1))
        return {"alpha": alpha, "f": f, "scores": scores, "p": p, "h": h, "beta": beta,
                "logits": logits}

    @torch.no_grad()
    def features(self, xs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Attention features f (T, D) of each video (T, R*D), float64 numpy."""
        dev = self.in_mean.device
        out = []
        for x in xs:
            y = self.regions_of(torch.as_tensor(np.array(x, np.float32), device=dev)[None])
            out.append(self.attend(y)[0][0].double().cpu().numpy())
        return out
