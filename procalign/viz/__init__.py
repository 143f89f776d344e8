"""procalign.viz."""
