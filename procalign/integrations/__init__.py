"""Bridges to outside execution engines (optional extras): :mod:`procalign.integrations.ray`."""
