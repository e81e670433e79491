"""Input photos for ``facegen prepare`` and prediction: a folder, a glob pattern or a tar archive, each photo
with the 68-point landmarks that may already sit beside it (300-W ``.pts``, dlib XML)."""

from __future__ import annotations

import glob
import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facegen.data.keys import unique_stems
from facegen.data.landmarks import LandmarkFileError, is_dlib_xml, read_dlib_xml, read_pts
from facegen.data.video import VIDEO_SUFFIXES, is_video

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class UnreadableImage(ValueError):
    """A photo that cannot be decoded; the message names it."""


@dataclass
class Photo:
    """One input photo: ``name`` (relative path, unique), ``key`` (the unique key stem of its faces), its encoded
    bytes (or its decoded ``pixels``, (H, W, 3) uint8 RGB, for a video frame), any known landmarks, and why a
    landmark file beside it could not be used (``landmark_problem``)."""

    name: str
    key: str
    data: bytes
    known_landmarks: list[np.ndarray] = field(default_factory=list)  # each (68, 2), original pixels
    landmark_source: str | None = None
    landmark_problem: str | None = None
    pixels: np.ndarray | None = None


def eight_bit(image: Image.Image) -> Image.Image:
    """``image`` with 16-bit, 32-bit integer or float grey levels scaled to 8 bits ("L"); other modes as they are.

    PIL's ``convert`` clips such levels instead of scaling them (a 16-bit PNG becomes white). 16-bit data (levels
    above 255) are scaled from [0, 65535], larger integers from [0, max]; floats from [0, 1] when they fit there,
    else as integers.
    """
    if not (image.mode.startswith("I") or image.mode == "F"):
        return image
    levels = np.asarray(image, dtype=np.float64)
    peak = float(levels.max(initial=0.0))
    if image.mode == "F" and peak <= 1.0:
        full = 1.0
    elif image.mode.startswith("I;16") or 255 < peak <= 65535:
        full = 65535.0
    else:
        full = max(peak, 255.0)
    return Image.fromarray(np.clip(levels * (255.0 / full), 0, 255).round().astype(np.uint8), "L")


def decode_image(data: bytes, name: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of encoded image ``data``, EXIF orientation applied, high bit depths scaled.

    8-bit colour and grey JPEGs and PNGs (nearly every photo) are decoded by OpenCV straight into an RGB array (a
    quarter of the time of PIL's decode, copies and conversion for a 4K photo; the same pixels), oriented here
    from the EXIF tag that PIL reads from a JPEG's header (PNGs with an ``eXIf`` chunk, which may follow the
    pixels, go through PIL); everything else goes through PIL."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            orientation = _plain_orientation(image, data)
            if orientation is not None:
                fast = _decode_8bit(data, orientation)
                if fast is not None:
                    return fast
            image = eight_bit(ImageOps.exif_transpose(image))
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise UnreadableImage(f"{name}: cannot decode image ({error})") from None


#: The EXIF tag of the orientation, and how each value (2-8) is undone, as PIL's ``exif_transpose`` does.
EXIF_ORIENTATION = 0x0112
_UPRIGHT = {
    2: lambda a: cv2.flip(a, 1),
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0),
    5: lambda a: cv2.transpose(a),
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    7: lambda a: cv2.rotate(cv2.transpose(a), cv2.ROTATE_180),
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


def _plain_orientation(image: Image.Image, data: bytes) -> int | None:
    """The EXIF orientation (1-8) of ``image`` (opened by PIL from ``data``, not decoded) when it is an 8-bit
    colour or grey JPEG, or an 8-bit grey or RGB PNG without an ``eXIf`` chunk (orientation 1); else None."""
    if image.format == "JPEG" and image.mode in ("RGB", "L"):
        return image.getexif().get(EXIF_ORIENTATION, 1)
    if image.format == "PNG" and len(data) > 25 and data[24] == 8 and data[25] in (0, 2):  # IHDR: depth, type
        return 1 if b"eXIf" not in data else None
    return None


def _decode_8bit(data: bytes, orientation: int) -> np.ndarray | None:
    """(H, W, 3) uint8 RGB of an 8-bit colour or grey JPEG or PNG, decoded by OpenCV straight into RGB and upright
    for EXIF ``orientation``; None when OpenCV cannot decode it (PIL then tries, and says why)."""
    flags = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION
    array = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    upright = _UPRIGHT.get(orientation)
    return array if array is None or upright is None else upright(array)


def read_photo(path: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a photo path as the photo stream gives it: a file, or ``archive.tar::member``."""
    archive, separator, member = str(path).partition("::")
    if separator:
        with tarfile.open(archive) as tar:
            data = tar.extractfile(member).read()
    else:
        data = Path(path).read_bytes()
    return decode_image(data, str(path))


class PhotoInput:
    """The photos of ``spec``: a folder (searched recursively), a glob pattern, or a ``.tar`` archive.

    Photos are listed in sorted order, so chunking them into shards is the same on every run.
    Landmark side files: ``<photo stem>.pts`` beside a photo, and dlib XML files in the folder or archive.
    ``keys``: the unique key stem of each photo's faces (:func:`facegen.data.keys.unique_stems`); ``setting``:
    the option named in errors (``--input`` for prepare, ``data.predict_dir`` for predict); ``videos``: also
    list video files (``videos``, :data:`facegen.data.video.VIDEO_SUFFIXES`), keyed with the photos.
    """

    def __init__(
        self,
        spec: str | Path,
        use_landmark_files: bool = True,
        setting: str = "--input",
        videos: bool = False,
    ) -> None:
        self.spec = str(spec)
        self.use_landmark_files = use_landmark_files
        path = Path(self.spec)
        if path.is_file() and tarfile.is_tarfile(path):
            self.kind = "tar"
            with tarfile.open(path) as archive:
                self._members = sorted(m.name for m in archive.getmembers() if m.isfile())
            files = self._members
        else:
            if path.is_dir():
                self.kind, root = "dir", path
                files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
            else:
                self.kind, root = "glob", Path(".")
                files = sorted(glob.glob(self.spec, recursive=True))
            self._root = root
        if self.kind != "glob" and not files:
            raise FileNotFoundError(f"{setting} {self.spec}: no files found")
        self.names = [f for f in files if f.lower().endswith(IMAGE_SUFFIXES)]
        self.videos = [f for f in files if is_video(f)] if videos else []
        if not self.names and not self.videos:
            looked = IMAGE_SUFFIXES + (VIDEO_SUFFIXES if videos else ())
            raise FileNotFoundError(
                f"{setting} {self.spec}: no photos found (looked for {', '.join(looked)})"
            )
        self.keys = unique_stems(self.names, self.videos)
        self._available = set(files)
        self._xml_landmarks: dict[str, list[np.ndarray]] = {}
        self._xml_source: dict[str, str] = {}
        self._xml_loaded = False

    def __len__(self) -> int:
        return len(self.names)

    def video_path(self, name: str) -> Path | None:
        """The file of video ``name``; None inside a tar archive (videos are read from files)."""
        if self.kind == "tar":
            return None
        return Path(self._root, name) if self.kind == "dir" else Path(name)

    def _read(self, name: str, archive: tarfile.TarFile | None) -> bytes:
        if archive is not None:
            return archive.extractfile(name).read()
        return Path(self._root, name).read_bytes() if self.kind == "dir" else Path(name).read_bytes()

    def _load_xml_landmarks(self, archive: tarfile.TarFile | None) -> None:
        for name in sorted(n for n in self._available if n.lower().endswith(".xml")):
            data = self._read(name, archive)
            if not is_dlib_xml(data):
                continue
            folder = str(Path(name).parent)
            for image, faces in read_dlib_xml(name, data).items():
                key = str(Path(folder, image)) if folder != "." else image
                self._xml_landmarks.setdefault(key, []).extend(faces)
                self._xml_source[key] = f"dlib-xml:{Path(name).name}"

    def _known_landmarks(self, name: str, archive) -> tuple[list[np.ndarray], str | None, str | None]:
        """(landmarks, their source, why a landmark file beside the photo was not usable)."""
        pts = str(Path(name).with_suffix(".pts"))
        if pts in self._available or (self.kind == "glob" and Path(pts).is_file()):
            try:
                return [read_pts(pts, self._read(pts, archive).decode("utf-8", "replace"))], "pts", None
            except LandmarkFileError as error:
                return [], None, str(error)  # a broken side file falls back to detection, and is reported
        if name in self._xml_landmarks:
            return self._xml_landmarks[name], self._xml_source[name], None
        return [], None, None

    def iter_photos(self, start: int = 0, stop: int | None = None) -> Iterator[Photo | tuple[str, str]]:
        """Photos ``names[start:stop]`` in order; an unreadable file yields ``(name, reason)`` instead."""
        archive = tarfile.open(self.spec) if self.kind == "tar" else None
        try:
            if self.use_landmark_files and not self._xml_loaded:
                self._load_xml_landmarks(archive)
                self._xml_loaded = True
            for name in self.names[start:stop]:
                try:
                    data = self._read(name, archive)
                except OSError as error:
                    yield name, f"cannot read file ({error})"
                    continue
                known, source, problem = (
                    self._known_landmarks(name, archive) if self.use_landmark_files else ([], None, None)
                )
                yield Photo(name, self.keys[name], data, known, source, problem)
        finally:
            if archive is not None:
                archive.close()
