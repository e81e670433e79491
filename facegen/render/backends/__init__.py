"""Rasterizer backends behind one contract: ``rasterize(vertices, faces, K, settings) -> Fragments``."""
