"""Shared fixtures."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run, so CI never flakes; fresh random examples
# are one environment variable away: HYPOTHESIS_PROFILE=random python -m pytest tests/test_numerics.py
settings.register_profile("ci", derandomize=True)
settings.register_profile("random", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

from .datagen import tutorial_stream


@pytest.fixture
def tutorial():
    return tutorial_stream(0)
