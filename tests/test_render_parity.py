"""Parity of the torch backend with PyTorch3D's MeshRasterizer (runs only where PyTorch3D is importable).

PyTorch3D's CPU rasterizer tests every pixel against every face, so the scenes stay small.
"""

from __future__ import annotations

import pytest
import torch

from facegen.geometry import MODEL_TO_OPENCV, intrinsics_from_focal, project_points, transform_points
from facegen.render import RasterSettings, Renderer, rasterize
from facegen.render.backends.pytorch3d_raster import opencv_to_pytorch3d_cameras, pytorch3d_available

pytestmark = pytest.mark.skipif(
    not pytorch3d_available(), reason="PyTorch3D is not installed (optional backend)"
)
SIZE = 64


def both(vertices, faces, K, **kwargs):
    results = []
    for backend in ("torch", "pytorch3d"):
        results.append(
            rasterize(vertices, faces, K, RasterSettings(image_size=(SIZE, SIZE), backend=backend, **kwargs))
        )
    return results


def assert_parity(ours, theirs, max_tie_fraction=0.002):
    """pix_to_face equal but for exact ties; barycentrics and zbuf within 1e-5 (relative for zbuf).

    PyTorch3D projects through float32 NDC, which moves a pixel's barycentrics on thin slivers by a few 1e-5;
    so 1e-5 must hold for 99.5% of the pixels and 1e-4 for all.
    """
    same = ours.pix_to_face == theirs.pix_to_face
    assert (~same).float().mean() <= max_tie_fraction
    covered = same & ours.mask
    assert covered.sum() > 0
    bary_error = (ours.bary[covered] - theirs.bary[covered]).abs().amax(-1)
    depth = ours.zbuf[covered].abs().clamp(min=1)
    zbuf_error = (ours.zbuf[covered] - theirs.zbuf[covered]).abs() / depth
    for error in (bary_error, zbuf_error):
        assert (error <= 1e-5).float().mean() >= 0.995 and error.max() <= 1e-4
    return same


def random_mesh(seed, num_faces=800):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.rand(num_faces, 1, 3, generator=generator) * torch.tensor([2.0, 2.0, 2.0]) + torch.tensor(
        [-1.0, -1.0, 3.0]
    )
    vertices = (centres + 0.25 * torch.randn(num_faces, 3, 3, generator=generator)).reshape(1, -1, 3)
    return vertices, torch.arange(3 * num_faces).reshape(-1, 3)


def test_camera_conversion_projects_like_opencv():
    K = intrinsics_from_focal(torch.tensor([50.0, 70.0]), (SIZE, SIZE + 16))
    points = torch.randn(2, 10, 3) * 0.3 + torch.tensor([0.0, 0.0, 2.0])
    cameras = opencv_to_pytorch3d_cameras(K, (SIZE, SIZE + 16), pixel_centres=False)
    theirs = cameras.transform_points_screen(points, image_size=(SIZE, SIZE + 16))[..., :2]
    ours, _ = project_points(points, K)
    assert torch.allclose(theirs, ours, atol=1e-3)


def test_a_turned_camera_projects_like_opencv_and_rasterizes_alike():
    """Intrinsics with a scaled rotation (a face fitted in a turned crop drawn into its photo)."""
    import math

    from facegen.geometry.camera import photo_intrinsics

    angle = 0.5
    turn = [
        [0.8 * math.cos(angle), -0.8 * math.sin(angle), 6.0],
        [0.8 * math.sin(angle), 0.8 * math.cos(angle), -3.0],
    ]
    K = photo_intrinsics(intrinsics_from_focal(torch.tensor([60.0]), (SIZE, SIZE)), torch.tensor([turn]))
    points = torch.randn(1, 10, 3) * 0.3 + torch.tensor([0.0, 0.0, 2.0])
    theirs = opencv_to_pytorch3d_cameras(K, (SIZE, SIZE), pixel_centres=False).transform_points_screen(
        points, image_size=(SIZE, SIZE)
    )[..., :2]
    assert torch.allclose(theirs, project_points(points, K)[0], atol=1e-3)
    vertices, faces = random_mesh(3)
    assert_parity(*both(vertices, faces, K))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("perspective_correct", [True, False])
def test_random_meshes(seed, perspective_correct):
    vertices, faces = random_mesh(seed)
    K = intrinsics_from_focal(torch.tensor([60.0]), (SIZE, SIZE))
    assert_parity(*both(vertices, faces, K, perspective_correct=perspective_correct))


def test_back_face_culling_matches():
    vertices, faces = random_mesh(2)
    K = intrinsics_from_focal(torch.tensor([60.0]), (SIZE, SIZE))
    ours, theirs = both(vertices, faces, K, cull_backfaces=True)
    assert_parity(ours, theirs)


def test_ict_mesh_and_shaded_images(ict_npz):
    from facegen.morphable.formats.ict import load_ict

    model = load_ict(ict_npz)
    vertices = transform_points(
        model.mean[None] - model.mean.mean(0), MODEL_TO_OPENCV[None], torch.tensor([[0.0, 0.0, 60.0]])
    )
    K = intrinsics_from_focal(torch.tensor([110.0]), (SIZE, SIZE))
    ours, theirs = both(vertices, model.faces, K)
    same = assert_parity(ours, theirs)
    colours = torch.rand(1, model.num_vertices, 3)
    sh = torch.randn(1, 27) * 0.2
    images = [
        Renderer(RasterSettings(image_size=(SIZE, SIZE), backend=b))(
            vertices, model.faces, K, colours=colours, sh_coeffs=sh
        ).image
        for b in ("torch", "pytorch3d")
    ]
    agree = same.unsqueeze(1).expand_as(images[0])
    assert (images[0][agree] - images[1][agree]).abs().max() <= 1e-4
