"""Statistical priors on the face code (coefficients are in standard deviations, so N(0, 1) is the prior)."""

from __future__ import annotations

from torch import Tensor


def coefficient_prior(coefficients: Tensor, per_face: bool = False) -> Tensor:
    """Mean over the batch of the squared norm of (B, k) coefficients: the negative log-likelihood of the
    N(0, I) prior up to constants (MoFA's statistical regularizer); 0 when k = 0. ``per_face``: (B,), not
    averaged."""
    norms = coefficients.pow(2).sum(-1)
    return norms if per_face else norms.mean()


def light_prior(light: Tensor, per_face: bool = False) -> Tensor:
    """Prefer white light: variance of the 9 SH coefficients across the RGB channels, (B, 27) -> scalar
    (``per_face``: (B,))."""
    per_channel = light.reshape(light.shape[0], 3, 9)
    variances = per_channel.var(1, unbiased=False).sum(-1)
    return variances if per_face else variances.mean()
