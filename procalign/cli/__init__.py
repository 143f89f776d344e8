"""procalign.cli."""
