"""Unlimited synthetic training faces: :class:`SynthStream` renders new random faces on the fly, in the data
loader's workers, instead of reading a fixed set of shards, so no training face repeats; :class:`MixedStream`
mixes such faces into batches read from real-photo shards.

The faces of a reader (a DDP rank's data-loader worker) and epoch are drawn from the seed sequence (seed, epoch,
reader, chunk): every reader and epoch sees faces of its own, and a run resumed mid-epoch renders the same faces
again and skips the batches it had consumed (as :class:`~facegen.data.streams.ShardStream` does), so it continues
exactly. The samples are encoded as ``facegen synth`` writes them into shards (JPEG crops, masks, landmarks, the
true code) and decoded as shards are read, so training sees what it would see from shards.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import torch

from facegen.data.streams import ShardStream, reading_state
from facegen.data.synth import SynthJob


class SynthStream(ShardStream):
    """Training batches of ``batch_size`` new faces of ``job`` (its face model, size, framing and sampling
    options), ``batches_per_rank`` per epoch and rank, with their true codes when ``with_params``."""

    def __init__(
        self, job: SynthJob, batch_size: int, batches_per_rank: int, seed: int = 0, with_params: bool = True
    ) -> None:
        super().__init__(
            [], batch_size, job.options.size, "train", batches_per_rank, 0, seed, with_params=with_params
        )
        self.job = job
        self._renderer = None  # built in the worker that first renders

    def _train_samples(self, reader: int, readers: int, state: dict) -> Iterator[dict]:
        """Encoded samples of new faces, endlessly: chunks of ``batch_size`` drawn from (seed, epoch, reader,
        chunk)."""
        if self._renderer is None:
            self._renderer = self.job.renderer()
        for chunk in itertools.count():
            seed = np.random.SeedSequence([self.seed, self.epoch, reader, chunk]).generate_state(1)[0]
            generator = torch.Generator().manual_seed(int(seed))
            first = chunk * self.batch_size
            yield from self.job.render_batch(self._renderer, first, self.batch_size, generator)


class MixedStream(ShardStream):
    """Training batches of real-photo shards ``urls`` (read as :class:`~facegen.data.streams.ShardStream` reads
    them) with new synthetic faces of ``job`` mixed in: a fraction ``mix`` (0 < mix < 1) of the samples, spread
    evenly (sample i of a reader is synthetic when floor((i + 1) mix) > floor(i mix)), so every batch holds
    ``batch_size * mix`` of them, give or take one. Both kinds follow the epoch, reader and resumption of the
    stream; no ground truth is decoded (photos have none)."""

    def __init__(
        self,
        urls: list[str],
        job: SynthJob,
        mix: float,
        batch_size: int,
        batches_per_rank: int,
        shuffle_buffer: int = 1000,
        seed: int = 0,
    ) -> None:
        if not 0 < mix < 1:
            raise ValueError(f"the synthetic share of a mixed stream must be in (0, 1), got {mix}")
        super().__init__(
            urls,
            batch_size,
            job.options.size,
            "train",
            batches_per_rank,
            shuffle_buffer,
            seed,
            with_params=False,
        )
        self.mix = mix
        self.faces = SynthStream(job, batch_size, batches_per_rank, seed, with_params=False)

    def _train_decoded(self, reader: int, readers: int, state: dict) -> Iterator[dict]:
        """The photos' decoded samples with the new faces mixed in; the photos' counts (bad samples, and the
        pass that gave none) stay in ``state``, the faces' bad samples are added to its skipped count."""
        photos = super()._train_decoded(reader, readers, state)
        self.faces.epoch = self.epoch
        faces_state = reading_state()
        faces = self.faces._train_decoded(reader, readers, faces_state)
        for index in itertools.count():
            if int((index + 1) * self.mix) > int(index * self.mix):
                sample = next(faces)
                state["skipped"] += faces_state["skipped"]
                faces_state["skipped"] = 0
            else:
                sample = next(photos)
            yield sample
