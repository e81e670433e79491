"""Binary glTF 2.0 (``.glb``): one file with the mesh, its UVs and normals, the texture embedded, and the
expression basis as morph targets whose default weights are the fitted expression, named by the model's
expression names (ICT-FaceKit: the ARKit names), so a web viewer, Blender or a game engine shows the fitted face
and can animate it.

Written directly (the format is a JSON header and one binary buffer; no library writes morph targets with
their names in ``extras.targetNames``, the convention Blender and three.js read). glTF's frame is Y up, the
front facing +Z, in metres, which is the face models' own frame scaled by ``metres_per_unit``; a vertex with
several UV corners (a seam) is split into one vertex per corner, as glTF keeps one UV per vertex; glTF's UV
origin is the top-left corner (``v`` flipped from the OBJ convention).
"""

from __future__ import annotations

import json
import struct
from typing import NamedTuple

import numpy as np

#: glTF's constants: component types, buffer-view targets and the triangle mode.
FLOAT, UNSIGNED_INT = 5126, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
TRIANGLES = 4
#: The chunk types and magic of a GLB file.
GLB_MAGIC, JSON_CHUNK, BIN_CHUNK = 0x46546C67, 0x4E4F534A, 0x004E4942


class GltfMesh(NamedTuple):
    """A textured mesh with morph targets, in the face model's frame and units.

    Attributes:
        vertices: (V, 3) the neutral mesh (what the morph targets start from) and ``normals`` (V, 3) unit normals
            of the mesh as shown (the fitted one).
        faces: (F, 3) vertex indices of the triangles.
        uv: (T, 2) UV coordinates (OBJ convention: origin bottom-left) and ``uv_faces`` (F, 3) their indices per
            triangle corner; None for a model without a UV layout (then no texture either).
        texture_png: the texture image, PNG-encoded (None: no texture).
        targets: (K, V, 3) vertex offsets of each morph target, or None.
        target_names: K names; ``weights``: (K,) the default weights (the fitted expression).
        metres_per_unit: model units -> metres.
        colours: (V, 3) per-vertex colours in [0, 1] (e.g. the reflectance), or None.
    """

    vertices: np.ndarray
    normals: np.ndarray
    faces: np.ndarray
    uv: np.ndarray | None
    uv_faces: np.ndarray | None
    texture_png: bytes | None
    targets: np.ndarray | None
    target_names: list[str]
    weights: np.ndarray
    metres_per_unit: float
    colours: np.ndarray | None = None


def split_seams(faces: np.ndarray, uv_faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One glTF vertex per distinct (vertex, UV) corner pair: returns the source vertex (N,) and UV (N,) of each
    new vertex and the triangles (F, 3) over the new vertices."""
    pairs = np.stack([faces.reshape(-1), uv_faces.reshape(-1)], 1).astype(np.int64)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    return unique[:, 0], unique[:, 1], inverse.reshape(faces.shape).astype(np.uint32)


class GltfAnimation(NamedTuple):
    """A mesh's motion over time: keyframe ``times`` (N,) in seconds, the morph-target ``weights`` (N, K) and the
    head's ``rotations`` (N, 3, 3) from the model's frame to the viewer's (glTF axes: Y up, toward the viewer),
    played linearly between keyframes."""

    times: np.ndarray
    weights: np.ndarray
    rotations: np.ndarray


def quaternions(rotations: np.ndarray) -> np.ndarray:
    """(N, 4) unit quaternions (x, y, z, w), glTF's order, of rotation matrices (N, 3, 3), signs kept
    continuous from one to the next (so that linear interpolation takes the short way)."""
    out = np.empty((len(rotations), 4))
    for n, m in enumerate(np.asarray(rotations, np.float64)):
        trace = np.trace(m)
        if trace > 0:
            s = 2 * np.sqrt(trace + 1)
            q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
        else:
            i = int(np.argmax(np.diag(m)))
            j, k = (i + 1) % 3, (i + 2) % 3
            s = 2 * np.sqrt(max(1 + m[i, i] - m[j, j] - m[k, k], 1e-12))
            q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
            q[i], q[j], q[k] = s / 4, (m[j, i] + m[i, j]) / s, (m[k, i] + m[i, k]) / s
        out[n] = q
        if n and out[n] @ out[n - 1] < 0:
            out[n] = -out[n]
    return out / np.linalg.norm(out, axis=1, keepdims=True)


class _Buffer:
    """The binary chunk being built, with its buffer views and accessors."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def view(self, payload: bytes, target: int | None = None) -> int:
        self.data.extend(b"\0" * (-len(self.data) % 4))
        view = {"buffer": 0, "byteOffset": len(self.data), "byteLength": len(payload)}
        if target is not None:
            view["target"] = target
        self.data.extend(payload)
        self.views.append(view)
        return len(self.views) - 1

    def accessor(self, array: np.ndarray, kind: str, target: int | None, bounds: bool = False) -> int:
        component = UNSIGNED_INT if array.dtype == np.uint32 else FLOAT
        accessor = {
            "bufferView": self.view(np.ascontiguousarray(array).tobytes(), target),
            "componentType": component,
            "count": int(array.shape[0]),
            "type": kind,
        }
        if bounds:
            accessor["min"] = np.atleast_1d(array.min(0)).astype(float).tolist()
            accessor["max"] = np.atleast_1d(array.max(0)).astype(float).tolist()
        self.accessors.append(accessor)
        return len(self.accessors) - 1


def glb_bytes(mesh: GltfMesh, animation: GltfAnimation | None = None) -> bytes:
    """``mesh`` as a binary glTF 2.0 file (one scene, one node, one mesh, one primitive), with ``animation`` of
    its morph-target weights and its node's rotation when given."""
    if mesh.uv is None:
        source, triangles = np.arange(len(mesh.vertices)), mesh.faces.astype(np.uint32)
    else:
        source, uv_index, triangles = split_seams(mesh.faces, mesh.uv_faces)
    scale = np.float32(mesh.metres_per_unit)
    positions = (mesh.vertices[source] * scale).astype(np.float32)
    buffer = _Buffer()
    attributes = {
        "POSITION": buffer.accessor(positions, "VEC3", ARRAY_BUFFER, bounds=True),
        "NORMAL": buffer.accessor(mesh.normals[source].astype(np.float32), "VEC3", ARRAY_BUFFER),
    }
    if mesh.colours is not None:
        colours = np.clip(mesh.colours[source], 0, 1).astype(np.float32)
        attributes["COLOR_0"] = buffer.accessor(colours, "VEC3", ARRAY_BUFFER)
    if mesh.uv is not None:
        uv = mesh.uv[uv_index].astype(np.float32) * np.float32([1, -1]) + np.float32([0, 1])
        attributes["TEXCOORD_0"] = buffer.accessor(uv, "VEC2", ARRAY_BUFFER)
    primitive: dict = {
        "attributes": attributes,
        "indices": buffer.accessor(triangles.reshape(-1), "SCALAR", ELEMENT_ARRAY_BUFFER),
        "mode": TRIANGLES,
    }
    gltf_mesh: dict = {"name": "face", "primitives": [primitive]}
    if mesh.targets is not None and len(mesh.targets):
        primitive["targets"] = [
            {"POSITION": buffer.accessor((delta[source] * scale).astype(np.float32), "VEC3", None, True)}
            for delta in mesh.targets
        ]
        gltf_mesh["weights"] = [float(w) for w in mesh.weights]
        gltf_mesh["extras"] = {"targetNames": list(mesh.target_names)}
    document: dict = {
        "asset": {"version": "2.0", "generator": "facegen"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "face"}],
        "meshes": [gltf_mesh],
    }
    if mesh.texture_png is not None and mesh.uv is not None:
        image = buffer.view(mesh.texture_png)
        document["images"] = [{"bufferView": image, "mimeType": "image/png"}]
        document["samplers"] = [{"magFilter": 9729, "minFilter": 9987}]
        document["textures"] = [{"source": 0, "sampler": 0}]
        document["materials"] = [
            {
                "name": "texture",
                "pbrMetallicRoughness": {
                    "baseColorTexture": {"index": 0},
                    "metallicFactor": 0.0,
                    "roughnessFactor": 1.0,
                },
                "extensions": {"KHR_materials_unlit": {}},  # the photo's colours already hold its shading
            }
        ]
        document["extensionsUsed"] = ["KHR_materials_unlit"]
        primitive["material"] = 0
    if animation is not None:
        times = buffer.accessor(np.asarray(animation.times, np.float32), "SCALAR", None, bounds=True)
        weights = buffer.accessor(np.asarray(animation.weights, np.float32).reshape(-1), "SCALAR", None)
        rotations = buffer.accessor(quaternions(animation.rotations).astype(np.float32), "VEC4", None)
        document["animations"] = [
            {
                "name": "track",
                "samplers": [
                    {"input": times, "output": weights, "interpolation": "LINEAR"},
                    {"input": times, "output": rotations, "interpolation": "LINEAR"},
                ],
                "channels": [
                    {"sampler": 0, "target": {"node": 0, "path": "weights"}},
                    {"sampler": 1, "target": {"node": 0, "path": "rotation"}},
                ],
            }
        ]
    binary = bytes(buffer.data) + b"\0" * (-len(buffer.data) % 4)
    document["buffers"] = [{"byteLength": len(binary)}]
    document["bufferViews"] = buffer.views
    document["accessors"] = buffer.accessors
    header = json.dumps(document, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 4)
    total = 12 + 8 + len(header) + 8 + len(binary)
    return b"".join(
        [
            struct.pack("<III", GLB_MAGIC, 2, total),
            struct.pack("<II", len(header), JSON_CHUNK),
            header,
            struct.pack("<II", len(binary), BIN_CHUNK),
            binary,
        ]
    )
