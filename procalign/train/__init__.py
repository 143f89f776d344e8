"""Training: the loop, checkpoints, logging and seeding (no method-specific code)."""

from procalign.train.checkpoint import Checkpointer, load_weights, read_metadata, save_weights, write_json
from procalign.train.loop import FitResult, JsonlLogger, cosine_warmup, fit
from procalign.train.seed import rng_state, seed_everything, set_rng_state

__all__ = [
    "Checkpointer",
    "FitResult",
    "JsonlLogger",
    "cosine_warmup",
    "fit",
    "load_weights",
    "read_metadata",
    "rng_state",
    "save_weights",
    "seed_everything",
    "set_rng_state",
    "write_json",
]
