"""procalign.data."""
