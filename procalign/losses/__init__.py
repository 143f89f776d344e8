"""procalign.losses."""
