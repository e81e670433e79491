"""Unlimited synthetic training faces: :class:`SynthStream` renders new random faces on the fly, in the data
loader's workers, instead of reading a fixed set of shards, so no training face repeats.

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

from facegen.data.streams import ShardStream
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
