"""The shard sample format shared by ``facegen prepare``, ``facegen synth`` and the data module.

Keys of one sample (WebDataset convention, the part after the first dot is the extension):
- ``__key__``: unique, no dots (:mod:`facegen.data.keys` makes them from photo paths);
- ``jpg`` (or ``png``): the aligned face crop, RGB;
- ``landmarks.npy``: (68, 2) float32, crop pixels, OpenCV pixel centres;
- ``confidence.npy`` (optional): (68,) float32 in [0, 1], the landmark detector's confidence per landmark
  (absent: 1 for every landmark);
- ``mask.png`` (optional): 8-bit face/skin mask of the crop;
- ``params.npz`` (synthetic data): the ground-truth code and camera;
- ``json``: source file, bounding box, detector, score, crop transform (original -> crop, 2x3).
"""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
from PIL import Image

from facegen.data.photos import eight_bit
from facegen.geometry.landmarks import NUM_LANDMARKS

IMAGE_KEYS = ("jpg", "jpeg", "png")


class BadSample(ValueError):
    """A shard sample that cannot be used; ``reason`` is a short tag for counting."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def encode_image(image: np.ndarray, format: str = "jpg", quality: int = 95) -> bytes:
    """Encoded (H, W, 3) or (H, W) uint8 image."""
    buffer = io.BytesIO()
    pil = Image.fromarray(image)
    if format in ("jpg", "jpeg"):
        pil.save(buffer, format="JPEG", quality=quality)
    else:
        pil.save(buffer, format="PNG")
    return buffer.getvalue()


def encode_array(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


#: The .npy header of a C-order (68, 2) float32 array, as :func:`encode_array` writes landmarks.
_LANDMARK_HEADER = encode_array(np.zeros((NUM_LANDMARKS, 2), np.float32))[: -NUM_LANDMARKS * 2 * 4]


def encode_sample(
    key: str,
    image: bytes,
    landmarks: np.ndarray,
    meta: dict,
    mask: bytes | None = None,
    params: dict[str, np.ndarray] | None = None,
    image_format: str = "jpg",
    confidence: np.ndarray | None = None,
) -> dict[str, bytes | str]:
    """A shard sample (see the module docstring) from already encoded image/mask bytes."""
    sample: dict[str, bytes | str] = {
        "__key__": key,
        image_format: image,
        "landmarks.npy": encode_array(np.asarray(landmarks, np.float32)),
        "json": json.dumps(meta, sort_keys=True).encode(),
    }
    if mask is not None:
        sample["mask.png"] = mask
    if confidence is not None:
        sample["confidence.npy"] = encode_array(np.asarray(confidence, np.float32))
    if params is not None:
        buffer = io.BytesIO()
        np.savez(buffer, **{name: np.asarray(value) for name, value in params.items()})
        sample["params.npz"] = buffer.getvalue()
    return sample


def _load_landmarks(data: bytes) -> np.ndarray:
    """(68, 2) float32 from ``.npy`` bytes; the exact layout facegen writes is read without parsing its header."""
    if data.startswith(_LANDMARK_HEADER) and len(data) == len(_LANDMARK_HEADER) + NUM_LANDMARKS * 2 * 4:
        return np.frombuffer(data, "<f4", offset=len(_LANDMARK_HEADER)).reshape(NUM_LANDMARKS, 2).copy()
    return np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32)


def _open_image(data: bytes, mode: str) -> Image.Image:
    with Image.open(io.BytesIO(data)) as pil:
        pil.load()
        pil = eight_bit(pil)
        return pil if pil.mode == mode else pil.convert(mode)


def _decode_pixels(data: bytes, grey: bool) -> np.ndarray:
    """(H, W, 3) RGB or, with ``grey``, (H, W) uint8 pixels of encoded image ``data``. 8-bit grey and colour
    images (what facegen writes) go through OpenCV's decoder, straight into an array (about half the time of
    PIL's open, decode and copy); anything else (16-bit, float, alpha, palette, CMYK) through PIL, which scales
    high bit depths (:func:`facegen.data.photos.eight_bit`)."""
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if array is not None and array.dtype == np.uint8 and (array.ndim == 2 or array.shape[2] == 3):
        if array.ndim == 2:
            return array if grey else cv2.cvtColor(array, cv2.COLOR_GRAY2RGB)
        return cv2.cvtColor(array, cv2.COLOR_BGR2GRAY if grey else cv2.COLOR_BGR2RGB)
    return np.asarray(_open_image(data, "L" if grey else "RGB"))


def decode_sample(raw: dict, image_size: int | None = None, with_params: bool = True) -> dict:
    """Decode and check one raw shard sample.

    Returns:
        dict with ``key``, ``image`` (3, S, S) uint8, ``landmarks`` (68, 2) float32 (scaled when the image was
        resized to ``image_size``), ``confidence`` (68,) float32 (ones when absent), ``mask`` (1, S, S) uint8
        (255 everywhere when absent), ``meta`` and, when present and ``with_params``, ``params`` {name: array}.

    Raises:
        BadSample: missing image or landmarks, undecodable image, malformed landmark or confidence array or
        params.
    """
    key = raw.get("__key__", "?")
    image_key = next((k for k in IMAGE_KEYS if k in raw), None)
    if image_key is None:
        raise BadSample("missing_key", f"sample {key} has no jpg/png image")
    if "landmarks.npy" not in raw:
        raise BadSample("missing_key", f"sample {key} has no landmarks.npy")
    try:
        image = _decode_pixels(raw[image_key], grey=False)
    except Exception as error:  # PIL raises many types for corrupt data
        raise BadSample("bad_image", f"sample {key}: cannot decode {image_key} ({error})") from None
    try:
        landmarks = _load_landmarks(raw["landmarks.npy"])
    except Exception as error:
        raise BadSample("bad_landmarks", f"sample {key}: unreadable landmarks.npy ({error})") from None
    if landmarks.shape != (NUM_LANDMARKS, 2) or not np.isfinite(landmarks).all():
        raise BadSample(
            "bad_landmarks", f"sample {key}: landmarks must be finite (68, 2), got {landmarks.shape}"
        )
    confidence = _confidence(raw.get("confidence.npy"), key)
    height, width = image.shape[:2]
    mask = None
    if "mask.png" in raw:
        try:
            mask = _decode_pixels(raw["mask.png"], grey=True)
        except Exception as error:
            raise BadSample("bad_image", f"sample {key}: cannot decode mask.png ({error})") from None
        if mask.shape != image.shape[:2]:
            raise BadSample(
                "bad_image",
                f"sample {key}: mask {mask.shape[::-1]} and image {image.shape[1::-1]} differ",
            )
    if image_size is not None and (width, height) != (image_size, image_size):
        size = (image_size, image_size)
        image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
        mask = None if mask is None else np.asarray(Image.fromarray(mask).resize(size, Image.BILINEAR))
        scale = np.array([image_size / width, image_size / height], np.float32)
        landmarks = (landmarks + 0.5) * scale - 0.5
    image_array = image.transpose(2, 0, 1)
    size = image_array.shape[1:]
    mask_array = np.full((1, *size), 255, np.uint8) if mask is None else mask[None]
    decoded = {
        "key": key,
        "image": image_array,
        "landmarks": landmarks,
        "confidence": confidence,
        "mask": mask_array,
        "meta": _decode_json(raw.get("json"), key),
    }
    if with_params and "params.npz" in raw:
        try:
            with np.load(io.BytesIO(raw["params.npz"]), allow_pickle=False) as params:
                decoded["params"] = {name: params[name].astype(np.float32) for name in params.files}
        except Exception as error:
            raise BadSample("bad_params", f"sample {key}: unreadable params.npz ({error})") from None
    return decoded


def _confidence(data: bytes | None, key: str) -> np.ndarray:
    """(68,) float32 landmark confidences of a sample (ones when it has none)."""
    if data is None:
        return np.ones(NUM_LANDMARKS, np.float32)
    try:
        confidence = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as error:
        raise BadSample("bad_landmarks", f"sample {key}: unreadable confidence.npy ({error})") from None
    if confidence.shape != (NUM_LANDMARKS,) or not np.isfinite(confidence).all():
        raise BadSample(
            "bad_landmarks", f"sample {key}: confidence must be finite (68,), got {confidence.shape}"
        )
    if confidence.min() < 0 or confidence.max() > 1:
        raise BadSample("bad_landmarks", f"sample {key}: confidence outside [0, 1]")
    return confidence.astype(np.float32)


def _decode_json(data: bytes | None, key: str) -> dict:
    if data is None:
        return {}
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadSample("bad_json", f"sample {key}: unreadable json ({error})") from None
