"""procalign: weakly supervised, procedure-aware video alignment.

The core is :mod:`procalign.dp`, a batched, masked, differentiable engine of dynamic programs
(DTW, soft-DTW, the monotone frame-to-step lattice, CPA's block partition). Methods (CPA, LRProp,
multi-task procedure learning, WeakSVR) are losses and decisions built on top of it.
"""

__version__ = "0.1.0"
