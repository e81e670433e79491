"""facegen: learn 3D faces and UV textures from unlabeled photographs."""

__version__ = "0.1.0"
