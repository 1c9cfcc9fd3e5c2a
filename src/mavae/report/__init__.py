"""The run report: figures and one self-contained HTML page built from a run directory."""
from .build import build_report

__all__ = ["build_report"]
