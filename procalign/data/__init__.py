"""procalign.data."""

from procalign.data.registry import DATASETS, Dataset, load  # noqa: E402,F401
