"""``facegen prepare``: photos -> aligned, landmarked face crops in WebDataset shards with a JSON manifest.

Photos are chunked in sorted order, ``photos_per_shard`` per shard, so a rerun maps the same photos to the
same shard: finished shards (tar + record) are kept, the rest are redone. Each photo yields at most
``max_faces`` samples, which bounds a shard's size. Detection runs in ``workers`` processes.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from facegen.data.alignment import crop_template, face_mask, warp_crop
from facegen.data.detection.detectors import lazy_detector, miss_reason
from facegen.data.detection.face import DetectedFace, LandmarkDetector, landmark_bbox
from facegen.data.keys import face_key
from facegen.data.photos import Photo, PhotoInput, UnreadableImage, decode_image
from facegen.data.sample import encode_image, encode_sample
from facegen.data.shards import ShardWriter, plan_shards, shard_path, write_json_atomic
from facegen.errors import ConfigError, check_choice
from facegen.geometry.affine import apply_affine, estimate_similarity
from facegen.geometry.boxes import inside_fraction

#: Why a photo gave no face (``unreadable``, ``no_face``, ``face_too_small``, ``face_outside_photo``: its
#: landmarks put every face mostly outside the photo) or, ``face_dropped``, why one face of a photo that gave
#: others was left out.
REJECT_REASONS = ("unreadable", "no_face", "face_too_small", "face_outside_photo", "face_dropped")
#: Least fraction of a face's landmark box inside the photo: a face mostly outside it would be cropped from
#: padding (landmark files that belong to another photo, or points shifted by an error).
MIN_INSIDE = 0.5
_MANIFEST_FIELDS = ("source", "face_index", "detector", "bbox", "score")


#: The face mask stored with each crop: the face outline, the skin without eyes and mouth, or none.
MaskKind = Literal["face", "skin", "none"]


@dataclass(frozen=True)
class CropOptions:
    """How faces are cropped: ``size``² pixels, jaw width = ``fill`` of the crop, optional ``mask``."""

    size: int = 224
    fill: float = 0.55
    mask: MaskKind = "face"
    min_face_size: float = 40.0  # pixels in the photo: smaller faces are rejected
    max_faces: int = 8  # per photo, largest first

    def __post_init__(self) -> None:
        if self.size < 16:
            raise ConfigError(f"--size must be at least 16 pixels, got {self.size}")
        if not 0.1 <= self.fill <= 1.0:
            raise ConfigError(f"--fill must be in [0.1, 1], got {self.fill}")
        check_choice("--mask", self.mask, MaskKind)
        if self.max_faces < 1:
            raise ConfigError(f"--max-faces must be at least 1, got {self.max_faces}")


@dataclass
class CroppedFace:
    """A face ready for a shard or the encoder: ``crop`` (S, S, 3) uint8, ``landmarks`` (68, 2) crop pixels,
    ``mask`` (S, S) uint8 or None, ``transform`` (2, 3) photo -> crop pixels, where it came from, the
    backend's per-landmark ``confidence`` (68,) in [0, 1] or None, and its ``dense`` landmarks (N, 2) in crop
    pixels or None."""

    crop: np.ndarray
    landmarks: np.ndarray
    mask: np.ndarray | None
    transform: np.ndarray
    bbox: tuple[float, float, float, float]
    score: float
    detector: str
    photo_size: tuple[int, int]  # (H, W)
    confidence: np.ndarray | None = None
    dense: np.ndarray | None = None

    def meta(self, source: str, index: int) -> dict:
        return {
            "source": source,
            "face_index": index,
            "bbox": [round(v, 2) for v in self.bbox],
            "score": round(self.score, 4),
            "detector": self.detector,
            "transform": np.round(self.transform, 6).tolist(),
            "photo_size": list(self.photo_size),
        }


@dataclass
class PhotoResult:
    """What one photo gave: its faces, or the reason it was rejected; ``key``: the key stem of its faces;
    ``dropped``: a line for each detected face left out (too small, or beyond ``max_faces``)."""

    name: str
    key: str
    faces: list[CroppedFace] = field(default_factory=list)
    reject: str | None = None
    detail: str = ""
    dropped: list[str] = field(default_factory=list)


def crop_face(image: np.ndarray, face: DetectedFace, options: CropOptions) -> CroppedFace:
    """Align ``face`` of ``image`` (H, W, 3) to the crop template and cut the crop (and mask)."""
    transform = estimate_similarity(face.landmarks, crop_template(options.size, options.fill))
    landmarks = apply_affine(transform, face.landmarks).astype(np.float32)
    crop = warp_crop(image, transform, options.size)
    mask = None if options.mask == "none" else face_mask(landmarks, options.size, options.mask)
    return CroppedFace(
        crop,
        landmarks,
        mask,
        transform,
        face.bbox,
        face.score,
        face.detector,
        tuple(image.shape[:2]),
        face.confidence,
        None if face.dense is None else apply_affine(transform, face.dense).astype(np.float32),
    )


def process_photo(photo: Photo, detector: LandmarkDetector | None, options: CropOptions) -> PhotoResult:
    """Detect (or read) the faces of ``photo`` and crop them; never raises for a bad photo."""
    try:
        image = photo.pixels if photo.pixels is not None else decode_image(photo.data, photo.name)
    except UnreadableImage as error:
        return PhotoResult(photo.name, photo.key, reject="unreadable", detail=str(error))
    if photo.known_landmarks:
        faces = [
            DetectedFace(lm, landmark_bbox(lm), 1.0, photo.landmark_source or "file")
            for lm in photo.known_landmarks
        ]
    elif detector is not None:
        faces = detector.detect(image)
    else:
        detail = photo.landmark_problem or "no landmark file beside the photo"
        return PhotoResult(photo.name, photo.key, reject="no_face", detail=detail)
    if not faces:
        detail = miss_reason(detector) + (f"; {photo.landmark_problem}" if photo.landmark_problem else "")
        return PhotoResult(photo.name, photo.key, reject="no_face", detail=detail)

    def size(face: DetectedFace) -> float:
        x0, y0, x1, y1 = landmark_bbox(face.landmarks)
        return max(x1 - x0, y1 - y0)

    height, width = image.shape[:2]
    inside = [inside_fraction(landmark_bbox(f.landmarks), width, height) for f in faces]
    outside = [
        f"a face {1 - share:.0%} outside the {width}x{height} photo (its landmarks do not fit the photo)"
        for share in inside
        if share < MIN_INSIDE
    ]
    faces = [f for f, share in zip(faces, inside, strict=True) if share >= MIN_INSIDE]
    if not faces:
        return PhotoResult(photo.name, photo.key, reject="face_outside_photo", detail=outside[0])
    large = sorted((f for f in faces if size(f) >= options.min_face_size), key=size, reverse=True)
    dropped = outside + [
        f"a {size(f):.0f} px face < --min-face-size {options.min_face_size:g}"
        for f in faces
        if size(f) < options.min_face_size
    ]
    dropped += [
        f"a {size(f):.0f} px face beyond --max-faces {options.max_faces}" for f in large[options.max_faces :]
    ]
    if not large:
        largest = max(size(f) for f in faces)
        return PhotoResult(
            photo.name,
            photo.key,
            reject="face_too_small",
            detail=f"largest face {largest:.0f} px < --min-face-size {options.min_face_size:g}",
        )
    faces = [crop_face(image, f, options) for f in large[: options.max_faces]]
    return PhotoResult(photo.name, photo.key, faces=faces, dropped=dropped)


# ------------------------------------------------------------------------------------------ workers
_worker_state: dict = {}


def _init_worker(detector: str, device: str, options: CropOptions) -> None:
    import torch

    torch.set_num_threads(1)
    _worker_state.update(detector=lazy_detector(detector, device), options=options)


@dataclass
class EncodedPhoto:
    """A photo's result ready for a shard: (sample, meta) per face, or the reason it was rejected."""

    name: str
    samples: list[tuple[dict, dict]]
    reject: str | None = None
    detail: str = ""
    dropped: list[str] = field(default_factory=list)


def _encode(result: PhotoResult) -> EncodedPhoto:
    """Encode the crops and masks (in the worker, so the main process only writes the tar)."""
    samples = []
    for index, face in enumerate(result.faces):
        meta = face.meta(result.name, index)
        mask = None if face.mask is None else encode_image(face.mask, "png")
        image = encode_image(face.crop, "jpg")
        sample = encode_sample(
            face_key(result.key, index), image, face.landmarks, meta, mask, confidence=face.confidence
        )
        samples.append((sample, meta))
    return EncodedPhoto(result.name, samples, result.reject, result.detail, result.dropped)


def _work(photo: Photo | tuple[str, str]) -> EncodedPhoto:
    if isinstance(photo, tuple):
        return EncodedPhoto(photo[0], [], reject="unreadable", detail=photo[1])
    return _encode(process_photo(photo, _worker_state["detector"], _worker_state["options"]))


# ------------------------------------------------------------------------------------------ the job
@dataclass
class PrepareJob:
    """One ``facegen prepare`` run (see the module docstring)."""

    input: str
    out: Path
    detector: str = "face-alignment"
    device: str = "cpu"
    crop: CropOptions = field(default_factory=CropOptions)
    photos_per_shard: int = 1000
    workers: int = 0
    use_landmark_files: bool = True
    progress: bool = True
    part: tuple[int, int] | None = None  # (I, N): write only shards i with i % N == I, and no manifest

    def signature(self) -> dict:
        """Options that change shard contents; finished shards are kept only when these match."""
        return {
            "input": str(self.input),
            "detector": self.detector,
            "crop": asdict(self.crop),
            "photos_per_shard": self.photos_per_shard,
            "use_landmark_files": self.use_landmark_files,
        }

    def run(self) -> dict:
        """Write the shards and ``manifest.json``; returns the manifest.

        With ``part`` (I, N), only the shards of that part are written (shard i belongs to part i % N, so parts
        run as a SLURM array never write the same file) and no manifest; a final run without ``part`` finds
        every finished shard, prepares any that are missing, and writes the one manifest.
        """
        started = time.perf_counter()
        photos = PhotoInput(self.input, self.use_landmark_files)
        self.out = Path(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        records, todo = plan_shards(self.out, len(photos), self.photos_per_shard, self.signature())
        if self.part is not None:
            todo = [shard for shard in todo if shard[0] % self.part[1] == self.part[0]]
            records = {i: r for i, r in records.items() if i % self.part[1] == self.part[0]}
        bar = tqdm(
            total=sum(stop - start for _, start, stop in todo),
            desc="prepare",
            unit="photo",
            disable=not self.progress,
        )
        if todo:
            with self._results() as results:
                for index, start, stop in todo:
                    records[index] = self._write_shard(index, results(photos.iter_photos(start, stop)), bar)
        bar.close()
        count = len(photos) if self.part is None else sum(r["photos"] for r in records.values())
        manifest = self._manifest(records, count, time.perf_counter() - started)
        if self.part is None:
            write_json_atomic(self.out / "manifest.json", manifest)
        return manifest

    def _write_shard(self, index: int, results: Iterable[EncodedPhoto], bar: tqdm) -> dict:
        path = shard_path(self.out, index)
        samples, rejects, photos = [], [], 0
        with ShardWriter(path, {"signature": self.signature()}) as writer:
            for result in results:
                photos += 1
                bar.update()
                rejects += [
                    {"source": result.name, "reason": "face_dropped", "detail": d} for d in result.dropped
                ]
                if result.reject:
                    rejects.append({"source": result.name, "reason": result.reject, "detail": result.detail})
                    continue
                for sample, meta in result.samples:
                    writer.write(sample)
                    samples.append({"key": sample["__key__"], **{k: meta[k] for k in _MANIFEST_FIELDS}})
            writer.extra.update(photos=photos, rejects=rejects, sample_list=samples)
        return writer.record

    @contextmanager
    def _results(self):
        """Yields a function mapping photos to results, in order: in this process or in a worker pool."""
        if self.workers <= 0:
            _worker_state.update(detector=lazy_detector(self.detector, self.device), options=self.crop)
            yield lambda items: map(_work, items)
            return
        context = multiprocessing.get_context("spawn")  # safe with torch and CUDA
        pool = context.Pool(self.workers, _init_worker, (self.detector, self.device, self.crop))
        try:
            yield lambda items: pool.imap(_work, items, chunksize=2)
        finally:
            pool.terminate()
            pool.join()

    def _manifest(self, records: dict[int, dict], photo_count: int, seconds: float) -> dict:
        ordered = [records[i] for i in sorted(records)]
        rejects = [r for record in ordered for r in record["rejects"]]
        counts = Counter(r["reason"] for r in rejects)
        samples = []
        for index in sorted(records):
            name = shard_path(self.out, index).name
            samples += [{**s, "shard": name} for s in records[index]["sample_list"]]
        return {
            "version": 1,
            "kind": "prepare",
            "input": str(self.input),
            "options": self.signature(),
            "image_size": self.crop.size,
            "framing": {"fill": self.crop.fill},
            "photos": photo_count,
            "faces": len(samples),
            "shards": [
                {
                    "file": shard_path(self.out, i).name,
                    "samples": records[i]["samples"],
                    "photos": records[i]["photos"],
                }
                for i in sorted(records)
            ],
            "reject_counts": {reason: counts.get(reason, 0) for reason in REJECT_REASONS},
            "rejects": rejects,
            "samples": samples,
            "seconds_this_run": round(seconds, 2),
        }
