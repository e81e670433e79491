"""Wavefront OBJ meshes that Blender and MeshLab open: vertex colours (``v x y z r g b``, the MeshLab extension
Blender also reads) or UV-textured with a ``.mtl`` material pointing at a PNG. Indices are 1-based."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np

from facegen.atomic import write_text_atomic


def _lines(line: str, values: np.ndarray) -> str:
    """``values`` (N, K) as N lines of ``line`` (a %-format with K fields and a newline), formatted in one
    %-operation over all values (several times faster than formatting line by line)."""
    values = np.asarray(values)
    return (line * values.shape[0]) % tuple(values.ravel().tolist()) if values.size else ""


@lru_cache(maxsize=8)
def _face_lines(faces: bytes, uv_faces: bytes | None, count: int) -> str:
    """The ``f`` lines of ``count`` triangles given as the bytes of (F, 3) int64 0-based index arrays; cached,
    since every mesh of a face model shares them (a batch of predictions writes them many times)."""
    corners = np.frombuffer(faces, dtype=np.int64).reshape(count, 3) + 1
    if uv_faces is None:
        return _lines("f %d %d %d\n", corners)
    uv_corners = np.frombuffer(uv_faces, dtype=np.int64).reshape(count, 3) + 1
    return _lines("f %d/%d %d/%d %d/%d\n", np.stack([corners, uv_corners], -1).reshape(count, 6))


@lru_cache(maxsize=4)
def _position_lines(vertices: bytes) -> tuple[str, ...]:
    """The ``v x y z`` lines (without their newline) of (V, 3) float64 positions given as bytes; cached, since
    the meshes of one face (vertex colours, textures) share their positions and differ only after them."""
    lines = _lines("v %.6g %.6g %.6g\n", np.frombuffer(vertices, dtype=np.float64).reshape(-1, 3))
    return tuple(lines.splitlines())


@lru_cache(maxsize=8)
def _uv_lines(uv_coords: bytes) -> str:
    """The ``vt`` lines of (T, 2) float64 UV coordinates given as bytes; cached like :func:`_face_lines`."""
    return _lines("vt %.6f %.6f\n", np.frombuffer(uv_coords, dtype=np.float64).reshape(-1, 2))


def obj_text(
    vertices: np.ndarray,
    faces: np.ndarray,
    colours: np.ndarray | None = None,
    uv_coords: np.ndarray | None = None,
    uv_faces: np.ndarray | None = None,
    material: tuple[str, str] | None = None,
) -> str:
    """The OBJ text of a triangle mesh.

    Args:
        vertices: (V, 3) positions. faces: (F, 3) 0-based vertex indices, counter-clockwise from outside.
        colours: (V, 3) in [0, 1], written after each position.
        uv_coords: (T, 2) in [0, 1] (v up, as OBJ expects); uv_faces: (F, 3) 0-based indices into them.
        material: (mtl file name, material name) to reference.
    """
    return _header(material) + _body(vertices, faces, colours, uv_coords, uv_faces)


def _header(material: tuple[str, str] | None) -> str:
    header = "# facegen reconstruction\n"
    return header if material is None else f"{header}mtllib {material[0]}\nusemtl {material[1]}\n"


def _body(
    vertices: np.ndarray,
    faces: np.ndarray,
    colours: np.ndarray | None,
    uv_coords: np.ndarray | None,
    uv_faces: np.ndarray | None,
) -> str:
    """The ``v``, ``vt`` and ``f`` lines (arguments of :func:`obj_text`)."""
    positions = _position_lines(np.ascontiguousarray(vertices, dtype=np.float64).tobytes())
    if colours is None:
        parts = ["\n".join(positions) + "\n" if positions else ""]
    else:
        colour_lines = _lines(" %.6g %.6g %.6g\n", np.clip(np.asarray(colours, dtype=np.float64), 0, 1))
        parts = ["".join(map(str.__add__, positions, colour_lines.splitlines(keepends=True)))]
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    uv_bytes = None
    if uv_coords is not None:
        parts.append(_uv_lines(np.ascontiguousarray(uv_coords, dtype=np.float64).tobytes()))
        uv_bytes = np.ascontiguousarray(uv_faces, dtype=np.int64).tobytes()
    parts.append(_face_lines(faces.tobytes(), uv_bytes, len(faces)))
    return "".join(parts)


def write_vertex_colour_obj(path: Path, vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray) -> Path:
    """A mesh with per-vertex colours (V, 3) in [0, 1]."""
    return write_text_atomic(Path(path), obj_text(vertices, faces, colours))


def write_textured_obj(
    path: Path,
    vertices: np.ndarray,
    faces: np.ndarray,
    uv_coords: np.ndarray,
    uv_faces: np.ndarray,
    texture_name: str,
) -> tuple[Path, Path]:
    """``path`` (.obj) and its ``.mtl`` beside it, whose diffuse map is ``texture_name`` (a PNG in the same folder)."""
    return write_textured_objs({Path(path): texture_name}, vertices, faces, uv_coords, uv_faces)[0]


def write_textured_objs(
    meshes: Mapping[Path, str],
    vertices: np.ndarray,
    faces: np.ndarray,
    uv_coords: np.ndarray,
    uv_faces: np.ndarray,
) -> list[tuple[Path, Path]]:
    """One textured mesh per ``meshes`` entry (.obj path -> texture file name), as :func:`write_textured_obj`
    writes it, all of the same geometry, whose lines are formatted once."""
    body = _body(vertices, faces, None, uv_coords, uv_faces)
    written = []
    for path, texture_name in meshes.items():
        path = Path(path)
        mtl = path.with_suffix(".mtl")
        material = path.stem
        write_text_atomic(
            mtl,
            f"newmtl {material}\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\nmap_Kd {texture_name}\n",
        )
        write_text_atomic(path, _header((mtl.name, material)) + body)
        written.append((path, mtl))
    return written


def read_obj(path: Path) -> dict[str, np.ndarray | list[str]]:
    """Parse the subset of OBJ written here (and by most tools): ``v`` (with optional colours), ``vt``, triangular
    ``f`` with optional ``/vt``, ``mtllib``. Returns vertices (V, 3), colours (V, 3) or empty, uv (T, 2), faces
    (F, 3) and uv_faces (F, 3) 0-based, and mtllib names."""
    vertices, colours, uv, faces, uv_faces, mtllib = [], [], [], [], [], []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if parts[0] == "v":
            values = [float(x) for x in parts[1:]]
            vertices.append(values[:3])
            if len(values) >= 6:
                colours.append(values[3:6])
        elif parts[0] == "vt":
            uv.append([float(x) for x in parts[1:3]])
        elif parts[0] == "f":
            if len(parts) != 4:
                raise ValueError(f"{path}:{number}: only triangles are supported, got {line!r}")
            corners = [p.split("/") for p in parts[1:]]
            faces.append([int(c[0]) - 1 for c in corners])
            if all(len(c) > 1 and c[1] for c in corners):
                uv_faces.append([int(c[1]) - 1 for c in corners])
        elif parts[0] == "mtllib":
            mtllib.append(parts[1])
    return {
        "vertices": np.array(vertices, dtype=np.float64).reshape(-1, 3),
        "colours": np.array(colours, dtype=np.float64).reshape(-1, 3),
        "uv": np.array(uv, dtype=np.float64).reshape(-1, 2),
        "faces": np.array(faces, dtype=np.int64).reshape(-1, 3),
        "uv_faces": np.array(uv_faces, dtype=np.int64).reshape(-1, 3),
        "mtllib": mtllib,
    }
