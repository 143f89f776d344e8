"""procalign.models."""

from procalign.models.encoders import ENCODERS, build_encoder, list_encoders  # noqa: E402,F401
