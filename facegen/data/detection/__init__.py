"""Landmark detection for ``facegen prepare`` and ``facegen predict``: the backends (face-alignment, MediaPipe
as a package or on LiteRT, dlib's 68-point predictor on LiteRT's faces), their chains, retries and fusion, and
the face type they share (:mod:`~facegen.data.detection.face`)."""
