"""Metrics: geometry error after rigid alignment, code errors."""

from facegen.evaluation.geometry import rigid_align, vertex_error

__all__ = ["rigid_align", "vertex_error"]
