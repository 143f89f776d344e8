"""procalign.eval."""
