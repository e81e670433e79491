"""Lightning callbacks: reconstruction pictures and code histograms."""

from facegen.callbacks.image_logger import FaceImageLogger

__all__ = ["FaceImageLogger"]
