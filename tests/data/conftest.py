"""Fixtures of the data tests."""

from tests.data.fixtures_extraction import video_dir  # noqa: F401
