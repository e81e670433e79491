"""The photometric stage solved by Levenberg-Marquardt: MoFA's point-based objective as a least-squares problem
per face, batched over faces.

The residuals of a face are, with w the stage's loss weights:
- photometric: ``sqrt(w.photometric / N) (c_v - I(p_v))`` for its N valid vertices v (visible, in the model's
  region and on the face mask when the stage starts), c_v the shaded vertex colour (albedo times SH
  irradiance), I(p_v) the image at its projection: MoFA's ``points`` term with the squared l2 colour distance,
  averaged per face;
- landmark: ``sqrt(w.landmark w_j / sum w) s (p_j - q_j)``, the landmark loss in pixels at 224²;
- priors: ``sqrt(w.shape) alpha``, ``sqrt(w.expression) beta``, ``sqrt(w.albedo) gamma`` and the light's
  spread over the RGB channels, ``sqrt(w.light / 3) (l_c - mean_c l)``.

Jacobians, all in closed form: shape and expression through the vertex normals and projections
(:meth:`PhotometricProblem._vertex_columns`), pose through the rotation's derivative and the translation unit,
albedo and light as the colour's linear factors, the priors' constant. The image is linearised at the current projections with
central-difference gradients (the bilinear lookup has no forward derivative): the value is the exact bilinear
sample, the derivative that of the image's smooth gradient. The valid vertices are chosen once, at the start, so
every step compares costs over the same points.

Why one module over 400 lines: the residuals and their closed-form Jacobians are one derivation; apart, each term
would be separated from its derivative."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from facegen.decoder import FaceCode, FaceDecoder
from facegen.decoder.code import PARTS
from facegen.fitting.levenberg import levenberg_marquardt
from facegen.fitting.problem import FitTargets
from facegen.geometry.camera import project_points, transform_points
from facegen.geometry.normals import vertex_normals
from facegen.geometry.rotations import euler_to_matrix
from facegen.geometry.sh import sh_basis, sh_shading
from facegen.losses.landmark import reference_scale
from facegen.losses.weights import LossWeights
from facegen.render.points import sample_image_at_points, visible_points

#: Shape and expression coefficients differentiated together (memory: vertices x batch x 3 x CHUNK floats).
CHUNK = 32
#: Faces fitted together (Jacobians of larger groups cost more per face on CPU: memory traffic).
GROUP = 8
#: The code parts whose coefficients carry a Gaussian prior (each weighted by its loss weight of that name).
PRIORS = ("shape", "expression", "albedo")


def image_gradients(image: Tensor) -> tuple[Tensor, Tensor]:
    """Central-difference x and y derivatives (B, C, H, W) per pixel of ``image`` (B, C, H, W), borders
    replicated."""
    padded = torch.nn.functional.pad(image, (1, 1, 1, 1), mode="replicate")
    return (
        (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2,
        (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2,
    )


def skew(vectors: Tensor) -> Tensor:
    """(..., 3, 3) cross-product matrices of ``vectors`` (..., 3): ``skew(a) @ b == a x b``."""
    x, y, z = vectors.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*vectors.shape, 3)


class PhotometricSetup(NamedTuple):
    """What a photometric fit is: the face ``decoder`` (model, camera, albedo), the code parts that move
    (``moving``, a subset of :data:`~facegen.decoder.code.PARTS`; the others stay), the ``region`` (V,) bool of
    vertices the photometric term sees, and the stage's loss ``weights``."""

    decoder: FaceDecoder
    moving: Sequence[str]
    region: Tensor
    weights: LossWeights


class PhotometricProblem:
    """Residuals and Jacobians of the photometric objective (module docstring) of ``setup`` for the faces
    ``targets`` from the starting ``code``. Parameters per face: the moving parts' entries, in
    :data:`~facegen.decoder.code.PARTS` order."""

    def __init__(self, setup: PhotometricSetup, code: FaceCode, targets: FitTargets) -> None:
        decoder, moving, region, weights = setup
        image, mask, landmarks, landmark_weights = (
            targets.image,
            targets.mask,
            targets.landmarks,
            targets.weights,
        )
        self.decoder, self.code, self.weights = decoder, code, weights
        self.moving = [part for part in PARTS if part in moving and getattr(code, part).shape[1]]
        self.image, self.gradients = image, image_gradients(image)
        size = image.shape[-1]
        self.target = torch.nan_to_num(landmarks)
        usable = landmark_weights.to(image) * torch.isfinite(landmarks).all(-1)
        self.landmark_root = (
            (weights.landmark * usable / usable.sum(-1, keepdim=True).clamp(min=1e-12)).sqrt()
            * reference_scale(size)
        )[..., None]  # (B, 68, 1)
        with torch.no_grad():
            decoded = decoder(code)
            visible = visible_points(decoded.vertices, decoded.normals, decoded.pixels, (size, size))
            on_face = sample_image_at_points(mask, decoded.pixels)[..., 0] > 0.5
            valid = (visible & region & on_face).to(image)
        model = decoder.model
        # the vertices valid for some face of the group carry the photometric rows; the faces around them
        # give their normals
        self.kept = valid.any(0).nonzero()[:, 0]  # (N,)
        share = weights.photometric / valid.sum(-1, keepdim=True).clamp(min=1)
        self.photo_root = (valid[:, self.kept] * share).sqrt()[..., None]  # (B, N, 1)
        local = torch.full((len(model.mean),), -1, dtype=torch.long, device=image.device)
        local[self.kept] = torch.arange(len(self.kept), device=image.device)
        corner_rows = local[model.faces]  # (F, 3): kept-vertex row of each corner, -1 elsewhere
        self.faces = model.faces[(corner_rows >= 0).any(1)]  # (F', 3) the faces around the kept vertices
        rows = local[self.faces].reshape(-1)
        columns = torch.arange(len(self.faces), device=image.device).repeat_interleave(3)
        self.incidence = torch.sparse_coo_tensor(
            torch.stack([rows, columns])[:, rows >= 0],
            torch.ones(int((rows >= 0).sum())).to(image),
            (len(self.kept), len(self.faces)),
            check_invariants=True,
        ).coalesce()  # (N, F'): 1 where the kept vertex is a corner of the face
        faces = self.faces
        coefficients = [part for part in ("shape", "expression") if part in self.moving]
        self.basis = (
            torch.cat(
                [
                    getattr(model, f"{part}_basis")[: self.width(part)]
                    * getattr(model, f"{part}_std")[: self.width(part), None, None]
                    for part in coefficients
                ]
            )
            if coefficients
            else None
        )  # (K, V, 3): the vertex displacement of each moving coefficient
        if self.basis is not None:  # the faces' edge displacements (F', 6, K): corner 1 and 2 minus corner 0
            self.basis_edges = torch.cat(
                [(self.basis[:, faces[:, c]] - self.basis[:, faces[:, 0]]).permute(1, 2, 0) for c in (1, 2)],
                1,
            )
        self.sizes = {part: self.width(part) for part in self.moving}
        self.prior_jacobian = self._prior_matrix().to(image)  # (Q, P)

    def width(self, part: str) -> int:
        """The number of code entries of ``part``."""
        return getattr(self.code, part).shape[1]

    def params(self, code: FaceCode | None = None) -> Tensor:
        """(B, P) the moving parts of ``code`` (default: the starting code)."""
        code = code or self.code
        return torch.cat([getattr(code, part) for part in self.moving], -1)

    def code_of(self, params: Tensor) -> FaceCode:
        """The starting code with the moving parts taken from ``params`` (B, P)."""
        values = self.code._asdict()
        values.update(zip(self.moving, params.split(list(self.sizes.values()), -1), strict=True))
        return FaceCode(**values)

    def columns(self, part: str) -> slice:
        """The Jacobian columns of a moving ``part``."""
        start = 0
        for name, width in self.sizes.items():
            if name == part:
                return slice(start, start + width)
            start += width
        raise KeyError(part)

    def _data(
        self, shape_vertices: Tensor, rotation: Tensor, translation: Tensor, albedo: Tensor, light: Tensor
    ) -> Tensor:
        """(B, M) photometric and landmark residuals of model-frame vertices (B, V, 3), pose parts (B, 3),
        (B, 3), per-vertex albedo (B, V, 3) and light (B, 27)."""
        decoder = self.decoder
        matrix, offset = decoder.camera_pose(self.code._replace(rotation=rotation, translation=translation))
        vertices = transform_points(shape_vertices, matrix, offset)
        pixels, _ = project_points(vertices, decoder.intrinsics.expand(len(vertices), 3, 3))
        kept = self.kept
        colours = albedo[:, kept] * sh_shading(vertex_normals(vertices, decoder.model.faces)[:, kept], light)
        anchor = pixels[:, kept].detach()
        moved = pixels[:, kept] - anchor
        observed = sample_image_at_points(self.image, anchor)
        for axis, gradient in enumerate(self.gradients):
            observed = observed + sample_image_at_points(gradient, anchor) * moved[..., axis : axis + 1]
        landmarks = pixels[:, decoder.model.landmark_indices]
        return torch.cat(
            [
                ((colours - observed) * self.photo_root).flatten(1),
                ((landmarks - self.target) * self.landmark_root).flatten(1),
            ],
            1,
        )

    def _inputs(self, code: FaceCode) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The inputs of :meth:`_data` for ``code``."""
        geometry = self.decoder.model(shape=code.shape, expression=code.expression).vertices
        return (
            geometry.expand(code.batch_size, -1, -1),
            code.rotation,
            code.translation,
            self.decoder.colours(code),
            code.light,
        )

    def _priors(self, code: FaceCode) -> Tensor:
        """(B, Q) prior residuals: shape, expression, albedo coefficients, then the light's channel spread."""
        weights = self.weights
        light = code.light.reshape(code.batch_size, 3, -1)
        spread = (light - light.mean(1, keepdim=True)).flatten(1) * math.sqrt(weights.light / 3)
        parts = [getattr(code, part) * math.sqrt(getattr(weights, part)) for part in PRIORS]
        return torch.cat([*parts, spread], -1)

    def _prior_matrix(self) -> Tensor:
        """(Q, P) the derivative of :meth:`_priors` (linear in the code) by the moving parameters."""
        weights = self.weights
        bands = self.width("light") // 3
        spread = torch.kron(torch.eye(3) - 1.0 / 3, torch.eye(bands)) * math.sqrt(weights.light / 3)
        blocks = [torch.eye(self.width(part)) * math.sqrt(getattr(weights, part)) for part in PRIORS]
        rows = torch.block_diag(*blocks, spread)  # (Q, Q): shape, expression, albedo, light
        starts, start = {}, 0
        for part in (*PRIORS, "light"):
            starts[part] = start
            start += self.width(part)
        columns = [
            rows[:, starts[part] : starts[part] + width]
            if part in starts
            else rows.new_zeros(len(rows), width)
            for part, width in self.sizes.items()
        ]
        return torch.cat(columns, 1)

    def __call__(self, params: Tensor, with_jacobian: bool) -> tuple[Tensor, Tensor | None]:
        code = self.code_of(params)
        inputs = self._inputs(code)
        data = self._data(*inputs)
        residual = torch.cat([data, self._priors(code)], -1)
        if not with_jacobian:
            return residual, None
        jacobian = data.new_zeros(len(params), residual.shape[1], params.shape[1])
        rows = data.shape[1]
        jacobian[:, rows:] = self.prior_jacobian
        local = self._local_derivatives(code, inputs)
        for part in ("rotation", "translation"):
            if part in self.sizes:
                self._pose_columns(part, code, inputs[0], local, jacobian[:, :rows, self.columns(part)])
        if self.basis is not None:
            start = self.columns("shape" if "shape" in self.sizes else "expression").start
            self._vertex_columns(inputs[0], local, jacobian[:, :rows, start : start + len(self.basis)])
        self._colour_columns(code, inputs, local, jacobian[:, :rows])
        return residual, jacobian

    def _local_derivatives(self, code: FaceCode, inputs: tuple[Tensor, ...]) -> LocalDerivatives:
        """Each vertex's derivatives at ``code`` (see :class:`LocalDerivatives`)."""
        vertices, _, _, albedo, light = inputs
        decoder, faces, batch = self.decoder, self.faces, len(vertices)
        matrix, offset = decoder.camera_pose(code)
        camera = transform_points(vertices, matrix, offset)
        edges = [
            (vertices[:, faces[:, corner]] - vertices[:, faces[:, 0]]).transpose(0, 1) for corner in (1, 2)
        ]
        area = torch.sparse.mm(self.incidence, torch.linalg.cross(*edges).reshape(len(faces), batch * 3))
        area = area.reshape(len(self.kept), batch, 3)  # (N, B, 3) model frame
        length = area.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        normals = area / length
        seen = normals.transpose(0, 1) @ matrix.transpose(-1, -2)  # camera-frame normals (B, N, 3)
        axes = torch.eye(3).to(light)
        irradiance = torch.stack(
            [torch.func.jvp(lambda n: sh_shading(n, light), (seen,), (a.expand_as(seen),))[1] for a in axes],
            -1,
        )
        seen_points = camera[:, self.kept]
        pixel = self._pixel_derivative(seen_points)
        anchor, _ = project_points(seen_points, decoder.intrinsics.expand(batch, 3, 3))
        gradient = torch.stack([sample_image_at_points(g, anchor) for g in self.gradients], -1)
        return LocalDerivatives(
            matrix,
            normals,
            length,
            seen,
            albedo[:, self.kept, :, None] * irradiance,
            gradient @ pixel,
            self._pixel_derivative(camera[:, decoder.model.landmark_indices]),
            edges,
        )

    def _pixel_derivative(self, camera: Tensor) -> Tensor:
        """(B, N, 2, 3) d pixel / d camera point at camera points (B, N, 3)."""
        depth = camera[..., 2]
        point = camera.new_zeros(*camera.shape[:2], 2, 3)
        point[..., 0, 0] = point[..., 1, 1] = 1 / depth
        point[..., :, 2] = -camera[..., :2] / depth[..., None].pow(2)
        return self.decoder.intrinsics[:2, :2] @ point

    def _write(self, out: Tensor, d_colour: Tensor, d_landmarks: Tensor) -> None:
        """Write Jacobian columns into ``out`` (B, M, k): colour changes (B, N, 3, k) into the photometric rows,
        landmark moves (B, 68, 2, k) into the landmark rows."""
        photometric_rows = self.photo_root.shape[1] * 3
        out[:, :photometric_rows] = (d_colour * self.photo_root[..., None]).flatten(1, 2)
        out[:, photometric_rows:] = (d_landmarks * self.landmark_root[..., None]).flatten(1, 2)

    def _pose_columns(
        self, part: str, code: FaceCode, vertices: Tensor, local: LocalDerivatives, out: Tensor
    ) -> None:
        """Write into ``out`` (B, M, 3) the Jacobian columns of the pose ``part``: a translation moves every camera
        point by the decoder's translation unit; a rotation angle's matrix derivative dR moves the camera points
        by dR x and turns the normals by dR n (model-frame x and n)."""
        landmarks = vertices[:, self.decoder.model.landmark_indices]
        vertices = vertices[:, self.kept]
        if part == "translation":
            moved = (torch.eye(3).to(vertices) * self.decoder.translation_unit).T  # (3, 3 axes)
            self._write(out, -local.sample @ moved, local.landmark_pixel @ moved)
            return
        flip = self.decoder.model_to_camera
        turns = torch.func.vmap(torch.func.jacfwd(lambda angles: euler_to_matrix(angles) @ flip))(
            code.rotation
        )
        d_points = torch.einsum("bpqi,bvq->bvpi", turns, vertices)  # (B, N, 3, 3 angles)
        d_normals = torch.einsum("bpqi,vbq->bvpi", turns, local.normals)
        d_colour = local.shading @ d_normals - local.sample @ d_points
        self._write(out, d_colour, local.landmark_pixel @ torch.einsum("bpqi,bvq->bvpi", turns, landmarks))

    def _vertex_columns(self, vertices: Tensor, local: LocalDerivatives, out: Tensor) -> None:
        """Write into ``out`` (B, M, K) the Jacobian columns of the moving shape and expression coefficients.

        A coefficient k moves the model-frame vertices along its scaled basis vectors D_k (V, 3). The colour of
        vertex v changes through its normal: the area-weighted normal m_v sums its faces' edge cross products,
        so dm_v = sum_f (dE1 x E2 + E1 x dE2) with dE the basis's edges (shared by every face of the batch),
        and the unit normal n changes by (dm - n (n . dm)) / |m|, turned into colour by the shading's derivative.
        The image sample and the landmarks move with the projection of R D_k(v). In chunks of :data:`CHUNK`
        coefficients."""
        faces, batch = self.faces, len(vertices)
        landmarks = self.decoder.model.landmark_indices
        shading = local.shading @ local.rotation[:, None]  # d colour / d model-frame normal (B, N, 3, 3)
        sample = local.sample @ local.rotation[:, None]  # d image sample / d model-frame vertex
        pixel = local.landmark_pixel @ local.rotation[:, None]
        unit, length = local.normals, local.length
        # d (E1 x E2) = -[E2]x dE1 + [E1]x dE2: one (3 x 6) matrix per face and batch entry
        crossing = torch.cat([-skew(local.edges[1]), skew(local.edges[0])], -1).reshape(
            len(faces), batch * 3, 6
        )
        for start in range(0, len(self.basis), CHUNK):
            chunk = self.basis[start : start + CHUNK]  # (k, V, 3)
            moved = self.basis_edges[..., start : start + CHUNK]  # (F', 6, k)
            d_area = torch.sparse.mm(
                self.incidence, (crossing @ moved).reshape(len(faces), batch * 3 * len(chunk))
            )
            d_area = d_area.reshape(len(self.kept), batch, 3, len(chunk))  # (N, B, 3, k)
            d_unit = (d_area - unit[..., None] * (unit[..., None] * d_area).sum(2, keepdim=True)) / length[
                ..., None
            ]
            d_colour = torch.einsum("bvcj,vbjk->bvck", shading, d_unit) - torch.einsum(
                "bvcj,kvj->bvck", sample, chunk[:, self.kept]
            )
            d_landmarks = torch.einsum("bvpj,kvj->bvpk", pixel, chunk[:, landmarks])
            self._write(out[..., start : start + len(chunk)], d_colour, d_landmarks)

    def _colour_columns(
        self, code: FaceCode, inputs: tuple[Tensor, ...], local: LocalDerivatives, out: Tensor
    ) -> None:
        """Write into ``out`` (B, M, P) the Jacobian columns of the moving albedo and light parts: the vertex
        colour is albedo times irradiance, linear in each (the landmark rows stay 0)."""
        albedo, light = inputs[3], inputs[4]
        rows = self.photo_root.shape[1] * 3
        if "albedo" in self.sizes:
            derivative = torch.func.vmap(
                lambda t: torch.func.jvp(
                    lambda a: self.decoder.colours(code._replace(albedo=a)),
                    (code.albedo,),
                    (t.expand_as(code.albedo),),
                )[1]
            )(torch.eye(code.albedo.shape[1]).to(light))[:, :, self.kept]  # (Ka, B, N, 3)
            column = derivative * sh_shading(local.seen, light) * self.photo_root
            out[:, :rows, self.columns("albedo")] = column.flatten(2).permute(1, 2, 0)
        if "light" in self.sizes:  # colour c = albedo c x (basis . light's 9 coefficients of channel c)
            channels = torch.eye(3).to(light)
            column = torch.einsum("bnc,cd,bnj->bncdj", albedo[:, self.kept], channels, sh_basis(local.seen))
            out[:, :rows, self.columns("light")] = (column.flatten(3) * self.photo_root[..., None]).flatten(
                1, 2
            )


class LocalDerivatives(NamedTuple):
    """Per-vertex quantities of a code that the Jacobian columns share, for the N kept vertices of a
    :class:`PhotometricProblem`: ``rotation`` (B, 3, 3) model -> camera; model-frame unit ``normals`` (N, B, 3),
    the ``length`` (N, B, 1) of their area-weighted sums, and camera-frame normals ``seen`` (B, N, 3);
    ``shading`` (B, N, 3 colours, 3) d colour / d camera-frame normal; ``sample`` (B, N, 3 colours, 3) d image
    sample / d camera point; ``landmark_pixel`` (B, 68, 2, 3) d landmark pixel / d camera point; the model-frame
    ``edges`` (2 x (F', B, 3), corner 1 and 2 minus corner 0) of the faces around the kept vertices."""

    rotation: Tensor
    normals: Tensor
    length: Tensor
    seen: Tensor
    shading: Tensor
    sample: Tensor
    landmark_pixel: Tensor
    edges: list[Tensor]


def fit_photometric(
    setup: PhotometricSetup, code: FaceCode, targets: FitTargets, iterations: int
) -> tuple[FaceCode, Tensor]:
    """``iterations`` of Levenberg-Marquardt on the :class:`PhotometricProblem` of each group of :data:`GROUP`
    faces from ``code`` (the faces are independent; a larger group only adds memory traffic). Returns the fitted
    code and the cost (iterations + 1, B) before each iteration and at the end."""
    codes, costs = [], []
    for start in range(0, code.batch_size, GROUP):
        faces = slice(start, start + GROUP)
        group = code.take(faces)
        problem = PhotometricProblem(setup, group, targets.take(faces))
        result = levenberg_marquardt(problem, problem.params(), iterations)
        codes.append(problem.code_of(result.params))
        costs.append(result.cost)
    return FaceCode(*(torch.cat(parts) for parts in zip(*codes, strict=True))), torch.cat(costs, 1)
