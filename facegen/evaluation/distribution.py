"""Distances between image distributions: KID (Binkowski et al., ICLR 2018: unbiased MMD with the cubic
polynomial kernel) and FID (Heusel et al., NeurIPS 2017: Frechet distance of Gaussians) on feature vectors."""

from __future__ import annotations

import numpy as np
import torch
from scipy import linalg
from torch import Tensor


def kernel_inception_distance(
    real: Tensor, fake: Tensor, subsets: int = 10, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID of features (N, D) and (M, D): mean and standard deviation over random subsets of
    min(``subset_size``, N, M) rows of the unbiased MMD² with k(x, y) = (x·y / D + 1)³. ~0 for one
    distribution; it can be slightly negative."""
    generator = torch.Generator().manual_seed(seed)
    real, fake = real.double().cpu(), fake.double().cpu()
    size = min(subset_size, real.shape[0], fake.shape[0])
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples of each set, got {real.shape[0]} and {fake.shape[0]}")
    dim = real.shape[1]
    values = []
    for _ in range(subsets):
        x = real[torch.randperm(real.shape[0], generator=generator)[:size]]
        y = fake[torch.randperm(fake.shape[0], generator=generator)[:size]]
        kxx, kyy, kxy = ((a @ b.T / dim + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        off_diagonal = size * (size - 1)
        mmd = (kxx.sum() - kxx.diagonal().sum()) / off_diagonal + (
            kyy.sum() - kyy.diagonal().sum()
        ) / off_diagonal
        values.append((mmd - 2 * kxy.mean()).item())
    return float(np.mean(values)), float(np.std(values))


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """FID of features (N, D) and (M, D); needs N, M > D for a meaningful estimate."""
    real, fake = real.double().cpu().numpy(), fake.double().cpu().numpy()
    mu_r, mu_f = real.mean(0), fake.mean(0)
    cov_r, cov_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    root, _ = linalg.sqrtm(cov_r @ cov_f, disp=False)
    return float(((mu_r - mu_f) ** 2).sum() + np.trace(cov_r + cov_f - 2 * root.real))
