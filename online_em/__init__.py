"""Streaming expectation-maximisation for Gaussian mixture models."""

from .model import OnlineGaussianMixture
from .stats import MixtureParameters, SufficientStatistics

__all__ = ["OnlineGaussianMixture", "SufficientStatistics", "MixtureParameters"]
__version__ = "0.1.0"
