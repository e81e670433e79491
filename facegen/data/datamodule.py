"""``FaceDataModule``: train/val/test/predict batches from WebDataset shards (or, to predict, a photo folder),
split over DDP ranks and workers, augmented on the device; synthetic shards generated on first use."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from facegen.data.augment import FaceAugmentation
from facegen.data.batch import FaceBatch, InputSpec
from facegen.data.detection.detectors import Detector
from facegen.data.prepare import CropOptions
from facegen.data.shard_origin import check_origin
from facegen.data.streams import ShardStream, count_samples, expand_shards
from facegen.data.synth import DEFAULT_SIZE, SynthOptions
from facegen.errors import ConfigError

log = logging.getLogger("facegen.data")


# ShardStream's length is exact per rank (every rank yields the same number of batches, dealt to its workers)
warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")


@dataclass
class SyntheticData:
    """Shards rendered with ``facegen synth`` into ``root/{train,val,test}`` when missing (on rank 0, in
    ``prepare_data``); each split uses its own seed so no face repeats across splits. The face model, the render
    size and the framing follow the task (:class:`~facegen.data.batch.InputSpec`): ``model`` and
    ``options.size`` need not be given, and are refused when they contradict it. ``stream``: the training faces
    are rendered on the fly instead (:class:`~facegen.data.synth_stream.SynthStream`: ``train`` new faces per
    epoch, none repeated, nothing written); validation and test stay fixed shards. With ``data.train`` shards
    (real photos), ``stream`` mixes new faces into their batches instead: a share ``mix`` (0 < mix < 1) of every
    batch (:class:`~facegen.data.synth_stream.MixedStream`; an epoch is one pass over the photos)."""

    root: str = "data/synth/builtin"
    model: str | None = None
    train: int = 2000
    val: int = 200
    test: int = 0
    samples_per_shard: int = 500
    seed: int = 0
    options: SynthOptions = field(default_factory=SynthOptions)
    stream: bool = False
    mix: float = 0.0

    def split_dir(self, split: str) -> Path:
        return Path(self.root) / split


def _check_mix(synthetic: SyntheticData | None, train) -> None:
    """Refuses a stream the config cannot mean: faces mixed into no photos, photos beside it without a share."""
    if synthetic is None or (not synthetic.stream and not synthetic.mix):
        return
    if not synthetic.stream:
        raise ConfigError(
            f"data.synthetic.mix {synthetic.mix} mixes faces rendered on the fly into data.train's batches: "
            "set data.synthetic.stream: true (or mix: 0)"
        )
    if train is None and synthetic.mix:
        raise ConfigError(
            f"data.synthetic.mix {synthetic.mix} mixes new faces into data.train's photos, which is not set: give "
            "data.train shards, or set mix: 0 to train on synthetic faces only"
        )
    if train is not None and not 0 < synthetic.mix < 1:
        raise ConfigError(
            f"data.synthetic.stream with data.train mixes new faces into the photos' batches: set "
            f"data.synthetic.mix to their share of each batch, between 0 and 1 (got {synthetic.mix})"
        )


def task_spec(trainer) -> InputSpec | None:
    """The input spec of the trainer's task (:attr:`facegen.tasks.base.FaceTask.input_spec`), when there is a
    task and it states one."""
    return getattr(trainer.lightning_module, "input_spec", None) if trainer is not None else None


def same_face_model(a: str, b: str) -> bool:
    """True when two face-model settings (``builtin`` or paths) name the same model."""
    return a == b or (a != "builtin" and b != "builtin" and Path(a).resolve() == Path(b).resolve())


class EpochLoader(DataLoader):
    """A DataLoader that tells its stream which epoch (and, after a mid-epoch resume, how many of its batches
    were consumed) before each pass, so shuffles are reproducible and resumable."""

    def __init__(self, dataset, datamodule: LightningDataModule, **kwargs) -> None:
        super().__init__(dataset, batch_size=None, **kwargs)
        self._datamodule = datamodule

    def __iter__(self):
        trainer = self._datamodule.trainer
        if trainer is not None:
            self.dataset.epoch = trainer.current_epoch
            progress = trainer.fit_loop.epoch_loop.batch_progress.current
            self.dataset.skip_batches = progress.ready if trainer.fit_loop.restarting else 0
        else:
            self.dataset.epoch += 1
        return super().__iter__()


class FaceDataModule(LightningDataModule):
    """:class:`~facegen.data.batch.FaceBatch` batches of face crops.

    Args:
        train, val, test, predict: shard URL patterns (brace expansion, ``::`` lists, folders, globs, URLs).
        predict_dir: a folder, glob or tar of photos to predict on, and video files in a folder or glob (their
            frames sampled at ``video_fps``, None: every frame); faces are cropped as ``facegen prepare`` does
            with ``predict_detector`` and ``crop`` (default: the task's image size and framing).
        synthetic: render synthetic shards when missing and use them for splits not given above.
        batch_size: per rank; ``eval_batch_size`` for val/test/predict (default: ``batch_size``).
        num_workers: dataloader processes per rank.
        image_size: crops are resized to this size when stored at another; default: the task's
            (:attr:`~facegen.tasks.base.FaceTask.input_spec`), and refused when it contradicts it.
        shuffle_buffer: samples held for shuffling the training stream.
        samples_per_epoch: training samples per epoch over all ranks (default: counted from local shards); the
            shards' samples when synthetic faces are mixed in (they come on top).
        augment: training augmentation on the device (None: off).
        seed: base seed of shuffling and augmentation.
        train_ground_truth: training batches of synthetic shards carry their ground truth too (for supervised
            baselines, e.g. ``benchmarks/supervised_upper_bound.py``; augmented batches never do).
    """

    def __init__(
        self,
        train: str | list[str] | None = None,
        val: str | list[str] | None = None,
        test: str | list[str] | None = None,
        predict: str | list[str] | None = None,
        predict_dir: str | None = None,
        synthetic: SyntheticData | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        image_size: int | None = None,
        shuffle_buffer: int = 1000,
        samples_per_epoch: int | None = None,
        augment: FaceAugmentation | None = None,
        predict_detector: Detector = "face-alignment",
        crop: CropOptions | None = None,
        seed: int = 0,
        train_ground_truth: bool = False,
        video_fps: float | None = 10.0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be at least 1, got {batch_size}")
        if video_fps is not None and video_fps <= 0:
            raise ConfigError(f"data.video_fps must be > 0 (or null: every frame), got {video_fps}")
        self.video_fps = video_fps
        self.sources = {"train": train, "val": val, "test": test, "predict": predict}
        self.predict_dir, self.synthetic = predict_dir, synthetic
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.given_image_size = num_workers, image_size
        self.image_size = image_size or DEFAULT_SIZE
        self.shuffle_buffer, self.samples_per_epoch, self.seed = shuffle_buffer, samples_per_epoch, seed
        self.augment, self.train_ground_truth = augment, train_ground_truth
        self.predict_detector, self.given_crop = predict_detector, crop
        self.crop = crop or CropOptions(size=self.image_size)
        _check_mix(synthetic, train)
        self.spec: InputSpec | None = None
        self.skipped_samples = 0
        self.streams: dict[str, torch.utils.data.IterableDataset] = {}

    # ------------------------------------------------------------------------------------ setup
    def follow_task(self, spec: InputSpec | None) -> None:
        """Take image size, face model and framing from the task's ``spec`` (the one source of them); a setting
        given here that contradicts it is refused. Without a spec (no task, or one that states none) the given
        values, else the defaults, hold."""
        if spec is None:
            return
        given = self.given_image_size
        if given is not None and given != spec.image_size:
            raise ConfigError(
                f"data.image_size {given} differs from the model's image size {spec.image_size} (model.image_size, "
                "or the checkpoint's): drop data.image_size, the data follow the model"
            )
        self.image_size = spec.image_size
        crop = CropOptions(size=spec.image_size, fill=spec.fill)
        if self.given_crop is not None:
            if (self.given_crop.size, self.given_crop.fill) != (crop.size, crop.fill):
                raise ConfigError(
                    f"data.crop size {self.given_crop.size} and fill {self.given_crop.fill} differ from the model's "
                    f"{crop.size} and {crop.fill}: set them equal (or leave data.crop unset)"
                )
            crop = self.given_crop
        self.crop = crop
        synthetic = self.synthetic
        if synthetic is not None:
            if synthetic.model is not None and not same_face_model(synthetic.model, spec.face_model):
                raise ConfigError(
                    f"data.synthetic.model {synthetic.model!r} differs from the model's face model "
                    f"{spec.face_model!r} (model.face_model): drop data.synthetic.model, synthetic faces follow the model"
                )
            size = synthetic.options.size
            if size is not None and size != spec.image_size:
                raise ConfigError(
                    f"data.synthetic.options.size {size} differs from the model's image size {spec.image_size}: "
                    "drop data.synthetic.options.size"
                )
        self.spec = spec

    def _synth_job(self, split: str, count: int, seed: int):
        """The ``facegen synth`` job that renders ``split`` (its face model, size and framing from the spec)."""
        from facegen.data.synth import SynthJob

        spec, synthetic = self.spec, self.synthetic
        model = synthetic.model or (spec.face_model if spec is not None else "builtin")
        framing = {"fov": spec.fov, "fill": spec.fill} if spec is not None else {}
        options = replace(synthetic.options, size=synthetic.options.size or self.image_size)
        return SynthJob(
            model,
            synthetic.split_dir(split),
            count,
            synthetic.samples_per_shard,
            seed,
            options=options,
            **framing,
        )

    def _source(self, split: str) -> str | list[str] | None:
        given = self.sources[split]
        if given is None and self.synthetic is not None and split in ("train", "val", "test"):
            if getattr(self.synthetic, split) > 0:
                return str(self.synthetic.split_dir(split))
        return given

    def prepare_data(self) -> None:
        """Render the synthetic shards that are missing and that the trainer's current job reads (rank 0 only;
        resumable): train and val to fit, val to validate, test to test, none to predict."""
        if self.synthetic is None:
            return
        self.follow_task(task_spec(self.trainer))
        spec = self.synthetic
        state = self.trainer.state if self.trainer is not None else None
        job = state.fn.value if state is not None and state.fn is not None else None
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ()}
        for offset, split in enumerate(("train", "val", "test")):
            count = getattr(spec, split)
            if count <= 0 or self.sources[split] is not None or split not in needed.get(job, (split,)):
                continue
            if split == "train" and spec.stream:  # rendered on the fly by the training stream
                continue
            synth = self._synth_job(split, count, spec.seed * 1000 + offset)
            if (synth.out / "manifest.json").is_file():
                continue
            log.info("rendering %d synthetic %s faces of %s into %s", count, split, synth.model, synth.out)
            synth.run()

    def setup(self, stage: str | None = None) -> None:
        self.follow_task(task_spec(self.trainer))
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}
        for split in splits.get(stage, ("train", "val", "test", "predict")):
            if split in self.streams:
                continue
            if split == "predict" and self.predict_dir is not None:
                from facegen.data.photo_stream import PhotoFolderStream

                self.streams[split] = PhotoFolderStream(
                    self.predict_dir,
                    self.eval_batch_size,
                    self.crop,
                    self.predict_detector,
                    video_fps=self.video_fps,
                )
                continue
            if split == "train" and self._streams_synthetic_faces():
                self.streams[split] = self._synth_stream()
                continue
            if split == "train" and self._mixes_synthetic_faces():
                self.streams[split] = self._mixed_stream(
                    expand_shards(self.sources[split], field="data.train")
                )
                continue
            source = self._source(split)
            if source is None:
                if stage is not None and split in ("train", "predict", "test"):
                    raise ConfigError(f"data.{split} is not set: give a shard pattern (or data.synthetic)")
                continue
            urls = expand_shards(source, field=f"data.{split}")
            if self.spec is not None:
                check_origin(split, urls, self.spec)
            if split == "train":
                self.streams[split] = ShardStream(
                    urls,
                    self.batch_size,
                    self.image_size,
                    "train",
                    self._batches_per_rank(urls),
                    self.shuffle_buffer,
                    self.seed,
                    with_params=self.train_ground_truth,
                )
            else:
                self.streams[split] = ShardStream(urls, self.eval_batch_size, self.image_size, "eval")

    def _streams_synthetic_faces(self) -> bool:
        synthetic = self.synthetic
        return (
            self.sources["train"] is None
            and synthetic is not None
            and synthetic.stream
            and synthetic.train > 0
        )

    def _mixes_synthetic_faces(self) -> bool:
        synthetic = self.synthetic
        return self.sources["train"] is not None and synthetic is not None and synthetic.stream

    def _synth_stream(self):
        """The training stream of new synthetic faces (``data.synthetic.stream``)."""
        from facegen.data.synth_stream import SynthStream

        synthetic = self.synthetic
        world = self.trainer.world_size if self.trainer is not None else 1
        batches = synthetic.train // (world * self.batch_size)
        if batches < 1:
            raise ConfigError(
                f"data.synthetic.train {synthetic.train} faces per epoch give no batch of {self.batch_size} for "
                f"each of {world} rank(s): raise it or lower data.batch_size"
            )
        job = self._synth_job("train", synthetic.train, synthetic.seed * 1000)
        return SynthStream(job, self.batch_size, batches, self.seed, with_params=self.train_ground_truth)

    def _mixed_stream(self, urls: list[str]):
        """The training stream of the photos of ``urls`` with new synthetic faces mixed in (``mix``)."""
        from facegen.data.synth_stream import MixedStream

        if self.train_ground_truth:
            raise ConfigError(
                "data.train_ground_truth: photos have no ground truth, so batches with new faces mixed in "
                "(data.synthetic.mix) carry none; train on synthetic shards or streams alone for it"
            )
        if self.spec is not None:
            check_origin("train", urls, self.spec)
        synthetic = self.synthetic
        job = self._synth_job("train", 0, synthetic.seed * 1000)
        batches = self._batches_per_rank(urls, photo_share=1 - synthetic.mix)
        return MixedStream(urls, job, synthetic.mix, self.batch_size, batches, self.shuffle_buffer, self.seed)

    def _batches_per_rank(self, urls: list[str], photo_share: float = 1.0) -> int:
        """Batches per rank and epoch: one pass over the training shards' samples, of which ``photo_share`` of
        each batch is made."""
        world = self.trainer.world_size if self.trainer is not None else 1
        total = self.samples_per_epoch or count_samples(urls)
        batches = int(total / photo_share) // (world * self.batch_size)
        if batches < 1:
            raise ConfigError(
                f"data.train has {total} samples, fewer than one batch of {self.batch_size} for each of {world} "
                "rank(s): lower data.batch_size or add data"
            )
        return batches

    # ------------------------------------------------------------------------------------ loaders
    def _loader(self, split: str) -> DataLoader:
        if split not in self.streams:
            raise ConfigError(f"data.{split} is not set")
        accelerated = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        stream = self.streams[split]
        settings = {
            "num_workers": self.num_workers,
            "pin_memory": accelerated,
            "prefetch_factor": 2 if self.num_workers > 0 else None,
        }
        if isinstance(stream, ShardStream):  # epochs and resumption; a photo folder is read once
            return EpochLoader(stream, self, **settings)
        return DataLoader(stream, batch_size=None, **settings)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val") if "val" in self.streams else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")

    # ------------------------------------------------------------------------------------ on device
    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> FaceBatch:
        """The loader's dict as a :class:`FaceBatch` (uint8 -> float in [0, 1]), bad-sample bookkeeping, and
        training augmentation, on the device."""
        batch = FaceBatch.from_loader(batch)
        if batch.skipped:
            self.skipped_samples += batch.skipped
            log.warning("%d bad samples skipped so far", self.skipped_samples)
        trainer = self.trainer
        if self.augment is not None and trainer is not None and trainer.training and len(batch):
            generator = torch.Generator(device=batch.image.device)
            generator.manual_seed(self.seed * 1_000_003 + trainer.global_step)
            batch = self.augment(batch, generator)
        return batch
