"""procalign.methods."""
