"""Lightning callbacks: reconstruction pictures and code histograms, checkpoints whose ``last.ckpt`` stays current,
and the prediction writers (which read only the typed predictions of :mod:`facegen.predictions`)."""

from facegen.callbacks.checkpoint import ModelCheckpoint
from facegen.callbacks.face_exporter import FaceExporter
from facegen.callbacks.image_logger import FaceImageLogger
from facegen.callbacks.texture_exporter import TextureExporter

__all__ = ["FaceExporter", "FaceImageLogger", "ModelCheckpoint", "TextureExporter"]
