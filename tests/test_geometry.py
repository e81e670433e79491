"""Cameras, rotations, normals and SH shading: closed forms, numerical integrals and gradcheck in float64."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck

from facegen.geometry import (
    MODEL_TO_OPENCV,
    ambient_sh,
    axis_angle_to_matrix,
    euler_to_matrix,
    face_normals,
    intrinsics_from_focal,
    intrinsics_from_fov,
    matrix_to_euler,
    project_points,
    sh_basis,
    sh_shading,
    transform_points,
    vertex_normals,
)

D = torch.float64


def cube():
    vertices = torch.tensor(
        [[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)], dtype=D
    )
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = torch.tensor([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    return vertices, faces


def test_intrinsics_follow_opencv_pixel_centres():
    K = intrinsics_from_focal(500.0, (224, 320))
    assert K.shape == (1, 3, 3)
    assert K[0, 0, 2] == 159.5 and K[0, 1, 2] == 111.5
    points = torch.tensor([[[0.0, 0.0, 2.0], [1.0, -0.5, 2.0]]])
    pixels, depth = project_points(points, K)
    assert torch.allclose(pixels[0, 0], torch.tensor([159.5, 111.5]))
    assert torch.allclose(pixels[0, 1], torch.tensor([159.5 + 250, 111.5 - 125]))  # x right, y down
    assert torch.allclose(depth, torch.tensor([[2.0, 2.0]]))


def test_fov_intrinsics():
    K = intrinsics_from_fov(90.0, (100, 200))
    assert math.isclose(K[0, 0, 0].item(), 100.0, rel_tol=1e-6)
    with pytest.raises(ValueError, match="field of view"):
        intrinsics_from_fov(180.0, (10, 10))


def test_model_to_opencv_faces_the_camera():
    nose = torch.tensor([[[0.0, 10.0, 100.0]]])  # Y up, +Z towards the viewer in the model frame
    camera = transform_points(nose, MODEL_TO_OPENCV[None], torch.tensor([[0.0, 0.0, 500.0]]))
    assert camera[0, 0, 2] < 500  # the nose is closer to the camera than the head centre
    assert camera[0, 0, 1] < 0  # above the centre means negative y (up) in OpenCV


def test_euler_round_trip_and_axis_rotations():
    angles = torch.tensor([[0.3, -0.4, 0.2], [-1.0, 0.5, 2.5]], dtype=D)
    R = euler_to_matrix(angles)
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3, dtype=D).expand(2, 3, 3), atol=1e-12)
    assert torch.allclose(torch.det(R), torch.ones(2, dtype=D))
    assert torch.allclose(matrix_to_euler(R), angles, atol=1e-10)
    yaw = euler_to_matrix(torch.tensor([[0.0, math.pi / 2, 0.0]], dtype=D))
    assert torch.allclose(
        yaw[0] @ torch.tensor([0.0, 0.0, 1.0], dtype=D), torch.tensor([1.0, 0.0, 0.0], dtype=D), atol=1e-12
    )


def test_axis_angle_matches_euler_for_single_axes():
    for axis in range(3):
        rotation = torch.zeros(1, 3, dtype=D)
        rotation[0, axis] = 0.7
        assert torch.allclose(axis_angle_to_matrix(rotation), euler_to_matrix(rotation), atol=1e-10)


def test_cube_normals_point_outward():
    vertices, faces = cube()
    normals = face_normals(vertices[None], faces)[0]
    centres = vertices[faces].mean(1)
    assert ((normals * centres).sum(-1) > 0).all()
    corner_normals = vertex_normals(vertices[None], faces)[0]
    assert (corner_normals * vertices > 0).all()  # each corner's normal points into its own octant
    assert torch.allclose(corner_normals.norm(dim=-1), torch.ones(8, dtype=D))


def test_vertex_normals_of_a_fine_sphere_are_radial():
    n = 40
    theta, phi = torch.meshgrid(
        torch.linspace(0.2, math.pi - 0.2, n, dtype=D),
        torch.linspace(0, 2 * math.pi, n + 1, dtype=D)[:-1],
        indexing="ij",
    )
    points = torch.stack([theta.sin() * phi.cos(), theta.sin() * phi.sin(), theta.cos()], -1).reshape(-1, 3)
    index = torch.arange(n * n).reshape(n, n)
    a, b = index[:-1], index[:-1].roll(-1, 1)
    c, d = index[1:].roll(-1, 1), index[1:]
    faces = torch.cat([torch.stack([a, d, c], -1), torch.stack([a, c, b], -1)]).reshape(-1, 3)
    normals = vertex_normals(points[None], faces)[0]
    inner = index[1:-1].reshape(-1)
    assert (normals[inner] * points[inner]).sum(-1).min() > 0.999


def _irradiance_numeric(normal: torch.Tensor, radiance_coeffs: torch.Tensor, n: int = 400) -> torch.Tensor:
    """E(n) = integral over the sphere of L(w) max(0, n.w) dw by the midpoint rule in (theta, phi)."""
    theta = (torch.arange(n, dtype=D) + 0.5) * math.pi / n
    phi = (torch.arange(2 * n, dtype=D) + 0.5) * math.pi / n
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    w = torch.stack([t.sin() * p.cos(), t.sin() * p.sin(), t.cos()], -1)
    radiance = sh_basis(w, lambertian=False) @ radiance_coeffs
    area = t.sin() * (math.pi / n) ** 2
    return (radiance * (w @ normal).clamp(min=0) * area).sum()


def test_sh_irradiance_matches_numerical_integral():
    coeffs = torch.tensor([0.9, 0.3, -0.2, 0.4, 0.1, -0.15, 0.2, 0.05, -0.1], dtype=D)
    for normal in torch.nn.functional.normalize(torch.randn(5, 3, dtype=D), dim=-1):
        closed_form = sh_basis(normal[None])[0] @ coeffs
        assert abs(closed_form.item() - _irradiance_numeric(normal, coeffs).item()) < 2e-4


def test_sh_basis_is_orthonormal_on_the_sphere():
    w = torch.nn.functional.normalize(torch.randn(400000, 3, dtype=D), dim=-1)
    basis = sh_basis(w, lambertian=False)
    gram = basis.T @ basis * (4 * math.pi / w.shape[0])
    assert torch.allclose(gram, torch.eye(9, dtype=D), atol=0.02)


def test_ambient_light_gives_constant_shading():
    normals = torch.nn.functional.normalize(torch.randn(2, 50, 3), dim=-1)
    shading = sh_shading(normals, ambient_sh(2, intensity=0.8))
    assert shading.shape == (2, 50, 3) and torch.allclose(shading, torch.full_like(shading, 0.8), atol=1e-6)


def test_sh_shading_channel_layout():
    coeffs = torch.zeros(1, 27)
    coeffs[0, 9 + 3] = 1.0  # green channel, Y11 (x)
    shading = sh_shading(torch.tensor([[[1.0, 0.0, 0.0]]]), coeffs)
    assert shading[0, 0, 0] == 0 and shading[0, 0, 2] == 0 and shading[0, 0, 1] > 0


def test_gradcheck_geometry():
    vertices, faces = cube()
    vertices = (vertices + 0.1 * torch.randn_like(vertices))[None].requires_grad_()
    assert gradcheck(lambda v: vertex_normals(v, faces), (vertices,))
    angles = torch.randn(2, 3, dtype=D, requires_grad=True)
    assert gradcheck(euler_to_matrix, (angles,))
    assert gradcheck(axis_angle_to_matrix, (angles,))
    points = (torch.randn(2, 5, 3, dtype=D) + torch.tensor([0, 0, 5.0], dtype=D)).requires_grad_()
    K = intrinsics_from_focal(torch.tensor([300.0, 400.0], dtype=D), (64, 64))
    assert gradcheck(lambda p: project_points(p, K)[0], (points,))
    normals = torch.nn.functional.normalize(torch.randn(2, 7, 3, dtype=D), dim=-1).requires_grad_()
    coeffs = torch.randn(2, 27, dtype=D, requires_grad=True)
    assert gradcheck(sh_shading, (normals, coeffs))
    rotation = euler_to_matrix(torch.randn(2, 3, dtype=D))
    translation = torch.randn(2, 3, dtype=D, requires_grad=True)
    assert gradcheck(lambda p, t: transform_points(p, rotation, t), (points, translation))


def test_photo_intrinsics_project_into_the_photo_what_the_crop_camera_projects_into_the_crop():
    import numpy as np

    from facegen.geometry.affine import apply_affine, invert_affine
    from facegen.geometry.camera import photo_intrinsics, project_points, upright_intrinsics

    angle, scale = 0.4, 0.7
    rotation = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    transform = np.concatenate([rotation, [[12.0], [-5.0]]], 1)  # photo -> crop pixels
    K = intrinsics_from_fov(12.0, (64, 64)).double()
    points = torch.randn(1, 20, 3, dtype=torch.float64) + torch.tensor([0.0, 0.0, 40.0], dtype=torch.float64)
    in_photo = photo_intrinsics(K, torch.from_numpy(transform)[None])
    crop_pixels, _ = project_points(points, K)
    photo_pixels, _ = project_points(points, in_photo)
    expected = apply_affine(invert_affine(transform), crop_pixels[0].numpy())
    assert np.allclose(photo_pixels[0].numpy(), expected, atol=1e-9)

    # the same camera as an upright pinhole rolled about its optical axis (what PyTorch3D's cameras take)
    upright, roll = upright_intrinsics(in_photo)
    assert torch.allclose(upright @ roll, in_photo, atol=1e-12)
    assert (
        upright[0, 0, 1] == 0 and upright[0, 1, 0] == 0 and torch.isclose(upright[0, 0, 0], upright[0, 1, 1])
    )
    assert torch.allclose(roll[0] @ roll[0].T, torch.eye(3, dtype=torch.float64), atol=1e-12)
    assert torch.isclose(upright[0, 0, 0], K[0, 0, 0] / scale)
    skewed = in_photo.clone()
    skewed[0, 0, 1] += 0.2 * upright[0, 0, 0]
    with pytest.raises(ValueError, match="skew"):
        upright_intrinsics(skewed)
