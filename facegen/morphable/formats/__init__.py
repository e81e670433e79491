"""Readers for the face-model files users download; each returns a :class:`MorphableModel`."""
