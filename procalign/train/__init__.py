"""procalign.train."""
