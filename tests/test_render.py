"""The pure-PyTorch renderer on analytic scenes: coverage, watertightness, depth, barycentrics, gradients."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from facegen.geometry import intrinsics_from_focal, vertex_normals
from facegen.render import (
    RasterSettings,
    Renderer,
    depth_image,
    interpolate_vertex_attributes,
    normal_image,
    rasterize,
    resolve_backend,
    sample_image_at_points,
    sample_uv_texture,
    visible_points,
)

D = torch.float64


def camera(size=16, focal=16.0, batch=1, dtype=torch.float32):
    return intrinsics_from_focal(torch.full((batch,), focal, dtype=dtype), (size, size))


def settings(size=16, **kwargs):
    return RasterSettings(image_size=(size, size), backend="torch", **kwargs)


def inside_triangle(points, tri):
    """Reference point-in-triangle for centres well inside or outside (float64, no tie handling)."""
    a, b, c = tri

    def edge(p, q):
        return (q[0] - p[0]) * (points[..., 1] - p[1]) - (q[1] - p[1]) * (points[..., 0] - p[0])

    w = torch.stack([edge(b, c), edge(c, a), edge(a, b)], -1)
    return (w > 0).all(-1) | (w < 0).all(-1), w


def test_single_triangle_coverage_barycentrics_and_depth():
    vertices = torch.tensor([[[-0.6, -0.5, 2.0], [0.7, -0.3, 2.5], [0.1, 0.8, 3.0]]])
    K = camera(32, 30.0)
    frags = rasterize(vertices, torch.tensor([[0, 1, 2]]), K, settings(32))
    projected = vertices[0, :, :2] / vertices[0, :, 2:] * 30.0 + 15.5
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    expected, w = inside_triangle(torch.stack([xs, ys], -1).double(), projected.double())
    clear = w.abs().amin(-1) > 1e-3
    assert torch.equal(frags.mask[0][clear], expected[clear])
    bary = frags.bary[0][frags.mask[0]]
    assert torch.allclose(bary.sum(-1), torch.ones(len(bary)), atol=1e-5) and (bary >= -1e-6).all()
    # perspective-correct barycentrics: the interpolated 3D point projects onto the pixel centre
    points = bary @ vertices[0]
    reprojected = points[:, :2] / points[:, 2:] * 30.0 + 15.5
    centres = torch.stack([xs, ys], -1)[frags.mask[0]]
    assert torch.allclose(reprojected, centres, atol=1e-3)
    assert torch.allclose(frags.zbuf[0][frags.mask[0]], points[:, 2], atol=1e-4)
    assert (frags.zbuf[0][~frags.mask[0]] == -1).all() and (frags.pix_to_face[0][~frags.mask[0]] == -1).all()


def test_screen_space_barycentrics_when_not_perspective_correct():
    vertices = torch.tensor([[[-0.6, -0.5, 2.0], [0.7, -0.3, 4.0], [0.1, 0.8, 3.0]]])
    frags = rasterize(
        vertices, torch.tensor([[0, 1, 2]]), camera(32, 30.0), settings(32, perspective_correct=False)
    )
    projected = vertices[0, :, :2] / vertices[0, :, 2:] * 30.0 + 15.5
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    centres = torch.stack([xs, ys], -1)[frags.mask[0]]
    assert torch.allclose(frags.bary[0][frags.mask[0]] @ projected, centres, atol=1e-3)


def _quad_through_pixel_centres():
    """Two triangles sharing a diagonal that passes exactly through pixel centres, with edges on centres too."""
    # with focal 1 and z 1 the screen position is x + 7.5; corners at integer pixel coordinates
    corners = torch.tensor([[2.0, 2.0], [12.0, 3.0], [13.0, 13.0], [3.0, 12.0]]) - 7.5
    vertices = torch.cat([corners, torch.ones(4, 1)], -1)[None]
    return vertices, torch.tensor([[0, 1, 2], [0, 2, 3]])


def test_quad_is_watertight_without_double_coverage():
    vertices, faces = _quad_through_pixel_centres()
    K = camera(16, 1.0)
    first = rasterize(vertices, faces[:1], K, settings())
    second = rasterize(vertices, faces[1:], K, settings())
    both = rasterize(vertices, faces, K, settings())
    assert not (first.mask & second.mask).any()  # a centre on the shared diagonal belongs to one face only
    assert torch.equal(first.mask | second.mask, both.mask)  # and to one of them: no gap
    diagonal = torch.arange(3, 13)
    assert both.mask[0, diagonal, diagonal].all()  # the diagonal's centres (x = y) are covered


def test_random_grid_mesh_covers_each_centre_once():
    torch.manual_seed(3)
    n = 6
    ys, xs = torch.meshgrid(torch.linspace(-6, 6, n), torch.linspace(-6, 6, n), indexing="ij")
    grid = torch.stack([xs, ys], -1).reshape(-1, 2)
    grid[(grid.abs() < 6).all(-1)] += torch.rand(((grid.abs() < 6).all(-1).sum(), 2)) - 0.5
    grid = grid.round()  # vertices on pixel centres: many exact ties on shared edges
    vertices = torch.cat([grid, torch.ones(len(grid), 1)], -1)[None]
    index = torch.arange(n * n).reshape(n, n)
    a, b, c, d = (
        index[:-1, :-1].reshape(-1),
        index[:-1, 1:].reshape(-1),
        index[1:, 1:].reshape(-1),
        index[1:, :-1].reshape(-1),
    )
    faces = torch.cat([torch.stack([a, b, c], 1), torch.stack([a, c, d], 1)])
    K = camera(16, 1.0)
    count = sum(rasterize(vertices, face[None], K, settings()).mask.int() for face in faces)
    assert count.max() == 1
    whole = rasterize(vertices, faces, K, settings())
    assert torch.equal(count.bool(), whole.mask)
    assert whole.mask[0, 2:14, 2:14].all()  # the interior of the grid has no holes


def cube(z=5.0):
    vertices = torch.tensor([[x, y, s] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for s in (-1.0, 1.0)])
    vertices[:, 2] += z
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = torch.tensor([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    return vertices[None], faces


def test_cube_depth_order_and_back_face_culling():
    vertices, faces = cube()
    K = camera(32, 40.0)
    frags = rasterize(vertices, faces, K, settings(32))
    front = {8, 9}  # the z = 4 face, (0, 4, 6, 2) -> triangles 8 and 9
    visible = set(frags.pix_to_face[frags.mask].unique().tolist())
    assert visible == front
    assert torch.allclose(frags.zbuf[frags.mask], torch.full_like(frags.zbuf[frags.mask], 4.0), atol=1e-5)
    culled = rasterize(vertices, faces, K, settings(32, cull_backfaces=True))
    assert torch.equal(culled.pix_to_face, frags.pix_to_face)  # only back faces were removed
    flipped = rasterize(vertices, faces[:, [0, 2, 1]], K, settings(32, cull_backfaces=True))
    assert set(flipped.pix_to_face[flipped.mask].unique().tolist()).isdisjoint(front)


def test_batch_uses_packed_face_indices():
    vertices, faces = cube()
    frags = rasterize(vertices.repeat(2, 1, 1), faces, camera(32, 40.0, batch=2), settings(32))
    assert torch.equal(frags.pix_to_face[1][frags.mask[1]], frags.pix_to_face[0][frags.mask[0]] + len(faces))


def test_gradcheck_barycentrics_and_depth():
    torch.manual_seed(0)
    vertices = torch.tensor(
        [[[-0.6, -0.5, 2.0], [0.7, -0.3, 2.5], [0.1, 0.8, 3.0], [0.9, 0.9, 2.2]]], dtype=D
    )
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    K = camera(8, 7.3, dtype=D)

    def render(v):
        frags = rasterize(v, faces, K, settings(8))
        return frags.bary, frags.zbuf

    assert gradcheck(render, (vertices.clone().requires_grad_(),), atol=1e-6)


def test_colour_gradients_reach_vertices_and_colours():
    vertices, faces = cube()
    vertices.requires_grad_()
    colours = torch.rand(1, 8, 3, requires_grad=True)
    out = Renderer(settings(32))(vertices, faces, camera(32, 40.0), colours=colours)
    (out.image * torch.rand_like(out.image)).sum().backward()
    assert vertices.grad.abs().sum() > 0 and colours.grad.abs().sum() > 0
    assert torch.isfinite(vertices.grad).all()


def test_bad_and_degenerate_input():
    vertices, faces = cube()
    with pytest.raises(ValueError, match="vertices passed to the renderer contain NaN"):
        rasterize(vertices * float("nan"), faces, camera(), settings())
    behind = vertices.clone().requires_grad_()
    shifted = behind - torch.tensor([0.0, 0.0, 5.5])  # the near half of the cube is behind the camera
    frags = rasterize(shifted, faces, camera(), settings())
    (frags.bary.sum() + frags.zbuf.sum()).backward()
    assert torch.isfinite(behind.grad).all()
    degenerate = torch.tensor([[[0.0, 0.0, 2.0], [0.5, 0.5, 2.0], [1.0, 1.0, 2.0]]], requires_grad=True)
    frags = rasterize(degenerate, torch.tensor([[0, 1, 2]]), camera(), settings())
    assert not frags.mask.any()
    frags.bary.sum().backward()
    assert torch.isfinite(degenerate.grad).all()
    off_screen = rasterize(vertices + torch.tensor([100.0, 0, 0]), faces, camera(), settings())
    assert not off_screen.mask.any()
    empty = rasterize(vertices, torch.zeros(0, 3, dtype=torch.long), camera(), settings())
    assert empty.pix_to_face.shape == (1, 16, 16) and not empty.mask.any()


def test_uv_texture_on_a_plane_reproduces_the_texture():
    size = 16
    corners = torch.tensor([[-0.5, -0.5], [15.5, -0.5], [15.5, 15.5], [-0.5, 15.5]]) - 7.5
    vertices = torch.cat([corners, torch.ones(4, 1)], -1)[None]
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    uv = torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])  # image row 0 = v 1
    texture = torch.rand(1, 3, 17, 17)
    frags = rasterize(vertices, faces, camera(size, 1.0), settings(size))
    assert frags.mask.all()
    sampled = sample_uv_texture(frags, uv, faces, texture)
    # pixel centre (x, y) sits at uv (x + 0.5) / 16, i.e. texel (x + 0.5): the mean of a 2x2 texel block
    expected = torch.nn.functional.avg_pool2d(texture, 2, stride=1)[0].permute(1, 2, 0)
    assert torch.allclose(sampled[0], expected, atol=1e-5)


def test_uv_seams_use_per_corner_coordinates():
    vertices, faces = _quad_through_pixel_centres()
    uv = torch.tensor([[0.1, 0.1], [0.2, 0.1], [0.2, 0.2], [0.8, 0.8], [0.9, 0.8], [0.9, 0.9]])
    uv_faces = torch.tensor([[0, 1, 2], [3, 4, 5]])  # the two triangles live in different texture regions
    texture = torch.zeros(1, 1, 32, 32)
    texture[..., 16:, :] = 1.0  # v < 0.5 is the lower half of the image (rows >= 16)
    frags = rasterize(vertices, faces, camera(16, 1.0), settings())
    sampled = sample_uv_texture(frags, uv, uv_faces, texture)[0, ..., 0]
    first = frags.pix_to_face[0] == 0
    second = frags.pix_to_face[0] == 1
    assert (sampled[first] > 0.999).all() and (sampled[second] < 1e-3).all()


def test_sh_vertex_and_pixel_shading_agree_on_a_plane():
    corners = torch.tensor([[-6.0, -6.0], [6.0, -6.0], [6.0, 6.0], [-6.0, 6.0]])
    vertices = torch.cat([corners, torch.full((4, 1), 10.0)], -1)[None]
    faces = torch.tensor([[0, 2, 1], [0, 3, 2]])  # normal towards the camera (-z)
    colours = torch.rand(1, 4, 3)
    sh = torch.randn(1, 27) * 0.3
    K = camera(16, 10.0)
    per_pixel = Renderer(settings(), shading="pixel")(vertices, faces, K, colours=colours, sh_coeffs=sh)
    per_vertex = Renderer(settings(), shading="vertex")(vertices, faces, K, colours=colours, sh_coeffs=sh)
    assert torch.allclose(per_pixel.image, per_vertex.image, atol=1e-5)
    unlit = Renderer(settings())(
        vertices, faces, K, colours=colours, background=torch.tensor([0.0, 1.0, 0.0])
    )
    assert (unlit.image[0, :, 0, 0] == torch.tensor([0.0, 1.0, 0.0])).all()  # the corner pixel is background


def test_debug_images():
    vertices, faces = cube()
    frags = rasterize(vertices, faces, camera(32, 40.0), settings(32))
    depth = depth_image(frags)
    assert depth.shape == (1, 1, 32, 32) and (depth[0, 0][frags.mask[0]] > 0).all()
    assert (depth[0, 0][~frags.mask[0]] == 0).all()
    normals = normal_image(frags, faces, vertex_normals(vertices, faces))
    assert normals.shape == (1, 3, 32, 32) and normals.max() <= 1 and normals.min() >= 0


def test_point_sampling_and_visibility():
    image = torch.rand(1, 3, 8, 10)
    pixels = torch.tensor([[[0.0, 0.0], [9.0, 7.0], [3.0, 4.0], [3.5, 4.0]]])
    sampled = sample_image_at_points(image, pixels)
    assert torch.allclose(sampled[0, 0], image[0, :, 0, 0]) and torch.allclose(
        sampled[0, 1], image[0, :, 7, 9]
    )
    assert torch.allclose(sampled[0, 3], (image[0, :, 4, 3] + image[0, :, 4, 4]) / 2, atol=1e-6)
    vertices, faces = cube()
    K = camera(32, 40.0)
    normals = vertex_normals(vertices, faces)
    projected = vertices[..., :2] / vertices[..., 2:] * 40.0 + 15.5
    facing = visible_points(vertices, normals, projected, (32, 32))
    assert facing[0].tolist() == [v[2] < 5 for v in vertices[0].tolist()]  # the 4 corners at z = 4
    frags = rasterize(vertices, faces, K, settings(32))
    occluded = visible_points(vertices, normals, projected, (32, 32), fragments=frags, depth_tolerance=1e-3)
    assert (occluded <= facing).all()


def test_backend_selection():
    assert resolve_backend("torch") == "torch"
    assert resolve_backend("auto") in ("torch", "pytorch3d")
    with pytest.raises(ValueError, match="backend must be one of"):
        RasterSettings(backend="opengl")


def test_interpolation_matches_between_cpu_and_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    vertices, faces = cube()
    colours = torch.rand(1, 8, 3)
    results = []
    for device in ("cpu", "cuda"):
        frags = rasterize(vertices.to(device), faces.to(device), camera(32, 40.0).to(device), settings(32))
        results.append(
            (
                frags.pix_to_face.cpu(),
                interpolate_vertex_attributes(frags, faces.to(device), colours.to(device)).cpu(),
            )
        )
    assert torch.equal(results[0][0], results[1][0]) and torch.allclose(
        results[0][1], results[1][1], atol=1e-5
    )
