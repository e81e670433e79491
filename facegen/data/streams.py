"""Streaming face samples from WebDataset shards, split over DDP ranks and dataloader workers.

- :func:`expand_shards`: brace patterns, ``::``-joined lists, folders and globs -> a list of shard URLs.
- :class:`ShardStream` (IterableDataset): reads tar shards (opened with WebDataset's ``gopen``), decodes and checks
  each sample (:func:`facegen.data.sample.decode_sample`), skips bad ones (counted, warned), and yields whole
  batches decoded in the worker. A bad FILE raises naming it (:class:`~facegen.errors.BadFileError`): a shard
  that is empty, not a tar archive or truncated, and a training stream whose shards give no decodable sample in
  a whole pass (instead of re-reading them forever).

  ``mode="train"``: shards are reshuffled every epoch (seeded by ``seed`` and the epoch), spread over all
  readers (ranks x workers), looped over, shuffled through a buffer, and every rank yields exactly
  ``batches_per_rank`` batches, so DDP ranks stay in step.

  ``mode="eval"``: every sample exactly once over all readers, in order: whole shards per reader when there
  are at least as many shards as readers, else every reader reads all shards and keeps every R-th sample.
"""

from __future__ import annotations

import glob
import json
import logging
import random
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info
from webdataset import shardlists
from webdataset.gopen import gopen

from facegen.data.sample import BadSample, decode_sample
from facegen.data.tar_reader import TarFormatError, group_samples, iter_tar_files
from facegen.errors import BadFileError

log = logging.getLogger("facegen.data")

#: Warnings printed per reader before going quiet (the counts keep going).
MAX_WARNINGS = 5


def _is_remote(url: str) -> bool:
    return "://" in url or url.startswith("pipe:")


def expand_shards(spec: str | list[str], field: str = "shards") -> list[str]:
    """Shard URLs from ``spec``: brace patterns (``a-{000000..000009}.tar``), ``::``-joined lists, local folders
    (every ``*.tar`` inside), local globs, and anything WebDataset opens (``https://``, ``pipe:``, ...).

    Raises:
        FileNotFoundError: naming ``field`` and the pattern, when local patterns match no file.
    """
    specs = [spec] if isinstance(spec, str) else list(spec)
    urls: list[str] = []
    for item in specs:
        for url in shardlists.expand_urls(str(item)):
            path = Path(url)
            if _is_remote(url):
                urls.append(url)
            elif path.is_dir():
                urls += sorted(str(p) for p in path.glob("*.tar"))
            elif any(c in url for c in "*?["):
                urls += sorted(glob.glob(url))
            elif path.is_file():
                urls.append(url)
            else:
                raise FileNotFoundError(f"{field}: shard {url} (from {item!r}) does not exist")
    if not urls:
        raise FileNotFoundError(f"{field}: the shard pattern {spec!r} matches no .tar file")
    return urls


def count_samples(urls: list[str]) -> int:
    """Samples in local shards: from the ``.json`` records that facegen writes beside them, else by reading
    the tar headers. Remote shards cannot be counted (give the count in the config)."""
    total = 0
    for url in urls:
        if _is_remote(url):
            raise ValueError(
                f"cannot count the samples of remote shard {url}: set samples_per_epoch in the config"
            )
        record = Path(url).with_suffix(".json")
        if record.is_file():
            try:
                total += int(json.loads(record.read_text())["samples"])
                continue
            except (ValueError, KeyError):
                pass
        try:
            with tarfile.open(url) as archive:
                total += len({m.name.split(".", 1)[0] for m in archive.getmembers() if m.isfile()})
        except (tarfile.TarError, OSError) as error:
            raise BadFileError(f"shard {url}: not a readable tar archive ({error})") from None
    return total


def worker_identity() -> tuple[int, int]:
    """(index, count) of this dataloader worker on its rank; (0, 1) in the main process."""
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


def reader_identity() -> tuple[int, int]:
    """(index, count) of this reader among all DDP ranks x dataloader workers."""
    rank, world = 0, 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    worker, workers = worker_identity()
    return rank * workers + worker, world * workers


def stack(arrays: list[np.ndarray]) -> torch.Tensor:
    """``arrays`` (all of one shape and dtype) stacked into one tensor (len, ...). In a dataloader worker the
    tensor is allocated in shared memory, so handing it to the main process sends a file descriptor instead of
    copying the batch once more (what PyTorch's default collation does)."""
    first = arrays[0]
    if get_worker_info() is None:
        return torch.from_numpy(np.stack(arrays))
    out = torch.empty((len(arrays), *first.shape), dtype=torch.from_numpy(first[:0]).dtype).share_memory_()
    np.stack(arrays, out=out.numpy())
    return out


def collate(samples: list[dict]) -> dict:
    """Stack decoded samples: image (B, 3, H, W) uint8, landmarks (B, 68, 2), confidence (B, 68), mask
    (B, 1, H, W) uint8, key, meta, and ``params`` {name: (B, n)} only when every sample has them."""
    batch = {
        "image": stack([s["image"] for s in samples]),
        "landmarks": stack([s["landmarks"] for s in samples]),
        "confidence": stack([s["confidence"] for s in samples]),
        "mask": stack([s["mask"] for s in samples]),
        "key": [s["key"] for s in samples],
        "meta": [s["meta"] for s in samples],
    }
    if all("params" in s for s in samples):
        names = samples[0]["params"].keys()
        if all(s["params"].keys() == names for s in samples):
            batch["params"] = {n: stack([s["params"][n] for s in samples]) for n in names}
    return batch


class ShardStream(IterableDataset):
    """Batches of decoded face samples from shards (see the module docstring).

    Args:
        urls: shard URLs (:func:`expand_shards`).
        batch_size: samples per batch; ``drop_last`` drops a short final batch (eval keeps it).
        image_size: resize crops to this size (None keeps the stored size, which must then agree).
        mode: ``train`` or ``eval``.
        with_params: decode the ground-truth ``params`` of synthetic shards (default: in eval mode only).
        batches_per_rank: train only; batches each rank yields per epoch.
        shuffle_buffer: train only; samples held for shuffling.
        seed: base seed of shard and sample shuffling.
    """

    def __init__(
        self,
        urls: list[str],
        batch_size: int,
        image_size: int | None = None,
        mode: str = "eval",
        batches_per_rank: int | None = None,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        with_params: bool | None = None,
    ) -> None:
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be train or eval, got {mode!r}")
        if mode == "train" and not batches_per_rank:
            raise ValueError("a train stream needs batches_per_rank >= 1")
        self.urls, self.batch_size, self.image_size = list(urls), batch_size, image_size
        self.mode, self.batches_per_rank = mode, batches_per_rank
        self.shuffle_buffer, self.seed = shuffle_buffer, seed
        self.with_params = mode == "eval" if with_params is None else with_params
        self.epoch = 0
        self.skip_batches = 0  # train: batches of this epoch already consumed (resuming mid-epoch)

    def __len__(self) -> int:
        """Batches per epoch on this rank (train only; eval streams have no fixed length per rank)."""
        if self.mode != "train":
            raise TypeError("an eval stream has no length")
        return self.batches_per_rank

    # ----------------------------------------------------------------------------- reading
    def _raw_samples(self, urls: list[str], state: dict) -> Iterator[dict]:
        """Raw samples (dicts of bytes) of ``urls``.

        Raises:
            BadFileError: naming the shard, when it cannot be opened, is not a tar archive, is truncated or
                holds no sample (a bad file is never skipped silently: its samples would be lost uncounted).
        """
        for url in urls:
            count = 0
            try:
                with gopen(url) as stream:
                    for raw in group_samples(iter_tar_files(stream)):
                        count += 1
                        yield raw
            except (OSError, TarFormatError) as error:
                raise BadFileError(f"shard {url}: {error}") from None
            if count == 0:
                raise BadFileError(
                    f"shard {url} holds no sample: remove it from the shard list or rewrite it"
                )

    def _bad(self, state: dict, reason: str, detail: str) -> None:
        state["skipped"] += 1
        state["warned"] += 1
        if len(state["reasons"]) < 3:
            state["reasons"].append(f"{reason}: {detail}")
        if state["warned"] <= MAX_WARNINGS:
            suffix = (
                " (further bad samples are counted, not printed)" if state["warned"] == MAX_WARNINGS else ""
            )
            log.warning("skipping a bad sample (%s): %s%s", reason, detail, suffix)

    def _decoded(self, raw_samples: Iterator[dict], state: dict) -> Iterator[dict]:
        for raw in raw_samples:
            try:
                sample = decode_sample(raw, self.image_size, with_params=self.with_params)
            except BadSample as error:
                self._bad(state, error.reason, str(error))
                continue
            if state.setdefault("size", sample["image"].shape) != sample["image"].shape:
                self._bad(
                    state,
                    "bad_image",
                    f"sample {sample['key']}: size {sample['image'].shape[1:]} differs "
                    f"from the first sample's {state['size'][1:]}; set image_size to resize",
                )
                continue
            state["decoded"] += 1
            yield sample

    def _batches(self, samples: Iterator[dict], state: dict) -> Iterator[dict]:
        pending: list[dict] = []
        for sample in samples:
            pending.append(sample)
            if len(pending) == self.batch_size:
                yield self._emit(pending, state)
                pending = []
        if pending and self.mode == "eval":
            yield self._emit(pending, state)

    @staticmethod
    def _emit(samples: list[dict], state: dict) -> dict:
        batch = collate(samples)
        batch["skipped"] = torch.tensor(state["skipped"])
        state["skipped"] = 0
        return batch

    # ----------------------------------------------------------------------------- splitting
    def _reader_samples(self, urls: list[str], reader: int, readers: int, state: dict) -> Iterator[dict]:
        """This reader's raw samples of ``urls``: whole shards when there are enough, else every R-th sample."""
        if len(urls) >= readers:
            return self._raw_samples(urls[reader::readers], state)
        every = self._raw_samples(urls, state)
        return (raw for i, raw in enumerate(every) if i % readers == reader)

    def _train_samples(self, reader: int, readers: int, state: dict) -> Iterator[dict]:
        """Raw samples, looping over the shards; raises after a whole pass in which no sample decoded (the
        consumer, :meth:`_decoded`, counts them in ``state`` before asking for the next raw sample)."""
        rng = random.Random(f"{self.seed}-{self.epoch}-{reader}")
        cycle = 0
        while True:
            order = list(self.urls)
            random.Random(f"{self.seed}-{self.epoch}-{cycle}").shuffle(order)
            raw = self._reader_samples(order, reader, readers, state)
            decoded = state["decoded"]
            yield from _shuffled(raw, self.shuffle_buffer, rng)
            if state["decoded"] == decoded:
                reasons = "; ".join(state["reasons"]) or "no sample reached this reader"
                raise BadFileError(
                    f"training reader {reader} of {readers} got no usable sample in a whole pass over "
                    f"{len(self.urls)} shard(s) ({self.urls[0]}, ...): first reasons: {reasons}"
                )
            cycle += 1

    def _train_decoded(self, reader: int, readers: int, state: dict) -> Iterator[dict]:
        """This reader's decoded training samples, endlessly (bad ones skipped and counted in ``state``)."""
        return self._decoded(self._train_samples(reader, readers, state), state)

    def __iter__(self) -> Iterator[dict]:
        reader, readers = reader_identity()
        state = reading_state()
        if self.mode == "eval":
            raw = self._reader_samples(self.urls, reader, readers, state)
            yield from self._batches(self._decoded(raw, state), state)
            if state["decoded"] == 0 and state["warned"]:
                raise BadFileError(
                    f"no usable sample in {len(self.urls)} shard(s) ({self.urls[0]}, ...) for reader {reader} of "
                    f"{readers}: all {state['warned']} were bad; first reasons: {'; '.join(state['reasons'])}"
                )
            return
        worker, workers = worker_identity()
        # this rank's batches, dealt to its workers round-robin (the DataLoader interleaves them the same way)
        quota = len(range(worker, self.batches_per_rank, workers))
        skip = len(range(worker, self.skip_batches, workers))
        batches = self._batches(self._train_decoded(reader, readers, state), state)
        for index, batch in enumerate(batches):
            if index >= quota:
                return
            if index >= skip:
                yield batch


def reading_state() -> dict:
    """A reader's counts: bad samples ``skipped`` since the last batch, ``warned`` and ``decoded`` in all, and the
    first ``reasons`` of bad samples."""
    return {"skipped": 0, "warned": 0, "decoded": 0, "reasons": []}


def _shuffled(items: Iterator[dict], size: int, rng: random.Random) -> Iterator[dict]:
    """Shuffle a stream through a buffer of ``size`` items."""
    buffer: list[dict] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        index = rng.randrange(size)
        yield buffer[index]
        buffer[index] = item
    rng.shuffle(buffer)
    yield from buffer
