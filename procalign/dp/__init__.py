"""procalign.dp."""
