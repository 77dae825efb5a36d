"""Streaming expectation-maximisation for Gaussian mixture models."""

from __future__ import annotations

import typing

__all__ = ["GaussianMixtureScorer", "OnlineGaussianMixture", "SufficientStatistics", "MixtureParameters"]
__version__ = "0.1.0"

if typing.TYPE_CHECKING:  # pragma: no cover
    from .anomaly import GaussianMixtureScorer
    from .model import OnlineGaussianMixture
    from .stats import MixtureParameters, SufficientStatistics

_LAZY = {
    "GaussianMixtureScorer": "anomaly",
    "OnlineGaussianMixture": "model",
    "SufficientStatistics": "stats",
    "MixtureParameters": "stats",
}


def __getattr__(name: str) -> typing.Any:
    """The classes, imported on first use: ``online-em --help`` need not load numpy and River."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
