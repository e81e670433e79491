"""Lightning callbacks: reconstruction pictures and code histograms, and the prediction writer."""

from facegen.callbacks.face_exporter import FaceExporter
from facegen.callbacks.image_logger import FaceImageLogger

__all__ = ["FaceExporter", "FaceImageLogger"]
