"""Mixture of VAE charts (Alberti et al., JMLR 2024): K VAEs, each a chart of the data manifold."""
from .model import Charts

__all__ = ["Charts"]
