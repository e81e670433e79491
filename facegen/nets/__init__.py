"""Networks: image encoders (ResNet-style, optional timm) and the code regressor."""

from facegen.nets.encoder import CodeRegressor, ResNetEncoder, TimmEncoder, build_backbone

__all__ = ["CodeRegressor", "ResNetEncoder", "TimmEncoder", "build_backbone"]
