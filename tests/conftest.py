"""Shared fixtures."""

from __future__ import annotations

import pytest

from .datagen import tutorial_stream


@pytest.fixture
def tutorial():
    return tutorial_stream(0)
