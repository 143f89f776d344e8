"""procalign.models."""
