"""Small labelled images as a LightningDataModule: sources, decoded cache, seeded split, augmentation."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from lightning.pytorch import LightningDataModule
from lightning.pytorch.accelerators import CUDAAccelerator
from torch.utils.data import DataLoader

from cifar_lightning.data import sources
from cifar_lightning.data.augment import (
    Augmentation,
    ImageArrayDataset,
    eval_transform,
    seed_augmentation,
    seed_worker,
    train_transform,
)
from cifar_lightning.data.device_batches import DeviceImages, DeviceSplit, EvalBatches, TrainBatches, already_batched
from cifar_lightning.data.images import decode_folder
from cifar_lightning.data.preprocessing import check_preprocessing
from cifar_lightning.data.sampling import EpochSeededSampler
from cifar_lightning.errors import EDITED, CheckpointError, ConfigError, DataError, UserError
from cifar_lightning.files import read_json, write_atomically


def channel_stats(images: np.ndarray, chunk: int = 5000) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] of N x H x W x 3 uint8 images, in chunks to bound memory."""
    sums = np.zeros((2, 3))  # of the values and of their squares
    for start in range(0, len(images), chunk):
        block = images[start : start + chunk].reshape(-1, 3).astype(np.float64) / 255.0
        sums += block.sum(0), (block**2).sum(0)
    count = len(images) * images.shape[1] * images.shape[2]
    mean = sums[0] / count
    std = np.sqrt(sums[1] / count - mean**2)
    return tuple(map(float, mean)), tuple(map(float, std))


def training_stats(cache: Path, split: str, images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``channel_stats`` of a training split, cached in ``<cache>.stats.json`` (2.3 s for CIFAR-10 otherwise);
    an entry of another cache, or not 3 means and 3 stds in (0, 1], is computed again."""
    path = cache.with_name(cache.name.removesuffix(".npz") + ".stats.json")
    stamp = f"{cache.stat().st_size}:{cache.stat().st_mtime_ns}"  # a rebuilt cache has other statistics
    splits: dict = {}
    try:
        stored = read_json(path, "statistics")  # bounded; deep nesting and huge numbers are refusals
        splits = stored["splits"] if stored["cache"] == stamp else {}
        mean, std = (tuple(splits[split][key]) for key in ("mean", "std"))
        if len(mean) == len(std) == 3 and all(isinstance(v, float) and 0 < v <= 1 for v in mean + std):
            return mean, std
    except (UserError, LookupError, TypeError, ValueError, AttributeError):
        pass  # missing, unreadable or of another form: computed and written again
    mean, std = channel_stats(images)
    splits = {**(splits if isinstance(splits, dict) else {}), split: {"mean": list(mean), "std": list(std)}}
    try:
        write_atomically(path, lambda tmp: tmp.write_text(json.dumps({"cache": stamp, "splits": splits})))
    except OSError:
        pass  # a full or read-only disk: the statistics are computed again next time
    return mean, std


def split_indices(labels: np.ndarray, val_size: int, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(validation, training) indices, a function of ``split_seed`` and the images' identities (class, then place
    in the class's official order, which every source keeps), so the same whatever order a source lists them in.
    Drawn in random order: a prefix (limit_val_batches) samples every class."""
    canonical = np.argsort(labels, kind="stable")  # class by class, each class in official order
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(split_seed)).numpy()
    return canonical[order[:val_size]], canonical[order[val_size:]]


def image_ids(labels: np.ndarray, indices: np.ndarray, classes: tuple[str, ...], split: str = "train") -> list[str]:
    """``<split>/<class>/<NNNN>`` for each index: its class and place in that class's official order."""
    ordinal = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        ordinal[members] = np.arange(len(members))
    return [f"{split}/{classes[labels[i]]}/{ordinal[i]:04d}" for i in indices]


def check_split(labels: np.ndarray, val_idx: np.ndarray, classes: tuple[str, ...], val_size: int) -> None:
    """Every class keeps a training image, and, when there is a validation split, gets a validation image."""
    for label, name in enumerate(classes):
        total, held = int((labels == label).sum()), int((labels[val_idx] == label).sum())
        if held == total or (val_size and held == 0):
            raise DataError(
                f"class {name} has {total} training image(s), and holding out val_size={val_size} of all "
                f"{len(labels)} leaves it no {'training' if held == total else 'validation'} image: add images "
                "of it, change val_size, or give a val/ folder"
            )


def prepared_cache(data) -> Path:
    """The decoded cache of a config's ``data``: the CLI reads the classes from it, then hands it to the data module."""
    archive, cache_dir = (Path(data[key]) if data.get(key) else None for key in ("archive", "cache_dir"))
    size = data["image_size"]
    return sources.prepare(
        Path(data["data_dir"]), archive, data["download"], data.get("dataset"), size=size, cache_dir=cache_dir
    )


class ImageDataModule(LightningDataModule):
    """Labelled small images: an image folder, an archive, or CIFAR-10/100's download; the classes come from the data.

    Args:
        data_dir: an image folder (``{train,test}/<class>/*``, at most one folder down), or where CIFAR's python
            batches are or a download lands; only read.
        archive: a ``.tar.gz`` of an image folder (``val/`` optional) or of CIFAR's python batches, read as a stream.
        cache_dir: where decoded images are kept; ``null``: ``$XDG_CACHE_HOME/cifar_lightning``.
        image_size: the side, in pixels, images are read, trained and predicted at (8 to 128).
        dataset: these python batches (``cifar100``: 100 fine classes, ``cifar100-coarse``: 20); ``null``:
            whatever ``archive`` or ``data_dir`` holds, else CIFAR-10.
        download: fall back to torchvision's download when ``data_dir`` holds no data.
        val_size: training images held out for validation, a count or a fraction (0: none, for a final fit); an
            image folder's ``val/`` is used instead when present.
        split_seed: seed of the train/validation split (independent of the run's seed).
        batch_size: training batch size.
        eval_batch_size: batch size for validation, test and predict.
        pipeline: ``device``: splits kept on the training device, batches augmented there as tensors;
            ``albumentations``: a DataLoader's workers run albumentations (to add its other transforms).
        num_workers: loader workers for ``albumentations`` and a ``predict_dir``; ``auto``: a core each, less one.
        pin_memory: page-locked batches for GPU copies; ``null``: on when the Trainer runs on CUDA.
        augmentation: the training augmentation, in pixels of a 32-pixel image (scaled with ``image_size``).
        predict_dir: a folder of your own images for ``predict``; without it, the test split.
    """

    def __init__(
        self,
        data_dir: str = "data",
        archive: str | None = None,
        cache_dir: str | None = None,
        image_size: int = sources.IMAGE_SIZE,  # checked by sources.prepare; a plain int keeps checkpoints weights_only
        dataset: sources.Dataset | None = None,
        download: bool = True,
        # int | float, checked below: jsonargparse dumps a NonNegativeInt | OpenUnitInterval union's 0.1 as 0
        val_size: int | float = 0.1,
        split_seed: int = 0,
        batch_size: PositiveInt = 128,
        eval_batch_size: PositiveInt = 512,
        pipeline: Literal["device", "albumentations"] = "device",
        num_workers: NonNegativeInt | Literal["auto"] = 1,
        pin_memory: bool | None = None,
        augmentation: Augmentation = Augmentation(),  # noqa: B008 - frozen, and LightningCLI shows the default's fields
        predict_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.archive = Path(archive) if archive else None
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.image_size = sources.check_image_size(image_size)
        self.dataset = dataset
        self.download = download
        if isinstance(val_size, bool) or not (isinstance(val_size, int) and val_size >= 0 or 0 < val_size < 1):
            raise ConfigError(
                f"data.val_size is {val_size}: give a number of images (0 or more) or a fraction between 0 and 1"
            )
        self.val_size = val_size
        self.split_seed = split_seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.pipeline = pipeline
        if augmentation.epoch_sides and pipeline != "device":
            raise ConfigError(
                "data.augmentation.epoch_sides needs data.pipeline device (the albumentations pipeline has one image size for the fit)"
            )
        self.workers_setting = num_workers
        self.pin_memory = pin_memory
        self.augmentation = augmentation.at(image_size)  # in pixels of the images as read
        self.predict_dir = Path(predict_dir) if predict_dir else None
        self.held_out: list[str] = []  # identities of the validation images, after setup
        self.source = ""  # the folder the images were decoded from, after setup
        self.preparation_seconds: float | None = None  # unpacking, decoding, the split: before the fit's clock
        self.classes: tuple[str, ...] = ()  # from the data, after setup (or class_names())
        self.cache: Path | None = None  # the decoded cache's path, once prepared() has found or made it
        self.mean: tuple[float, ...] = ()
        self.std: tuple[float, ...] = ()
        # seed of the epoch-seeded shuffling and augmentation; saved in checkpoints so a
        # resumed run replays the same epochs (state_dict below)
        self.shuffle_seed: int | None = None
        self._device_splits: dict[tuple, DeviceSplit] = {}  # (split, device, statistics): the device pipeline's copies

    def prepare_data(self) -> None:
        started = time.perf_counter()
        self.prepared()
        self.preparation_seconds = time.perf_counter() - started

    def prepared(self) -> Path:
        """The decoded cache of this data (``sources.prepare``), found or made once per command."""
        if self.cache is None:
            self.cache = sources.prepare(
                self.data_dir, self.archive, self.download, self.dataset, size=self.image_size, cache_dir=self.cache_dir
            )
        return self.cache

    def class_names(self) -> tuple[str, ...]:
        """The data's classes in label order: sorted folder names, or the data set's own list."""
        if not self.classes:
            self.classes = sources.read_classes(self.prepared())
        return self.classes

    def setup(self, stage: str) -> None:
        if hasattr(self, "train_set"):
            return
        started = time.perf_counter()
        cache = self.prepared()  # decoded by prepare_data already (on this process, or another on this machine)
        arrays = sources.read_cache(cache, size=self.image_size)
        if arrays is None:
            raise DataError(f"the decoded cache {cache} is unreadable: delete it and rerun")
        self.classes = arrays.classes
        n = len(arrays.train_images)
        if arrays.val_images is not None:  # the folder's own val/
            val_images, val_labels = arrays.val_images, arrays.val_labels
            train_images, train_labels = arrays.train_images, arrays.train_labels
            self.held_out = image_ids(val_labels, np.arange(len(val_labels)), self.classes, "val")
        else:
            val_size = round(self.val_size * n) if isinstance(self.val_size, float) else self.val_size
            if val_size >= n:
                raise DataError(
                    f"val_size={self.val_size} leaves no training images (the training set has {n}): lower it"
                )
            val_idx, train_idx = split_indices(arrays.train_labels, val_size, self.split_seed)
            check_split(arrays.train_labels, val_idx, self.classes, val_size)
            self.held_out = image_ids(arrays.train_labels, np.sort(val_idx), self.classes)  # recorded with the run
            val_images, val_labels = arrays.train_images[val_idx], arrays.train_labels[val_idx]
            train_images, train_labels = arrays.train_images[train_idx], arrays.train_labels[train_idx]
        self.source = arrays.origin
        if not self.mean:  # a checkpoint's statistics (load_state_dict) win over the data present
            # statistics of the training split only, so nothing leaks from validation or test
            split = "val/" if arrays.val_images is not None else f"{len(val_labels)}:{self.split_seed}"
            self.mean, self.std = training_stats(cache, split, train_images)
        self.train_set = ImageArrayDataset(train_images, train_labels, None)
        self.val_set = ImageArrayDataset(val_images, val_labels, None)
        self.test_set = ImageArrayDataset(arrays.test_images, arrays.test_labels, None)
        self._build_transforms()
        # unpacking and decoding (prepare_data), then reading the cache and the split: not part of the fit's time
        self.preparation_seconds = (self.preparation_seconds or 0.0) + time.perf_counter() - started

    def _build_transforms(self) -> None:
        evaluate = eval_transform(self.mean, self.std)
        self.train_set.transform = train_transform(self.augmentation, self.mean, self.std)
        self.val_set.transform = evaluate
        self.test_set.transform = evaluate

    @property
    def smaller_training_sides(self) -> tuple[int, ...]:
        """The sides under the full image that some training epoch shrinks its batches to (``augmentation.epoch_sides``)."""
        return tuple(sorted({side for side in self.augmentation.epoch_sides if side != self.image_size}))

    @property
    def preprocessing(self) -> dict:
        """What the network expects (training mean and std, classes, input size): saved in every checkpoint."""
        if not self.mean:
            return {}
        return {
            "mean": list(self.mean),
            "std": list(self.std),
            "class_names": list(self.classes),
            "input_size": [self.image_size, self.image_size],
        }

    @property
    def num_workers(self) -> int:
        if self.workers_setting != "auto":
            return int(self.workers_setting)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        devices = self.trainer.num_devices if self.trainer is not None else 1
        return max(0, cores // max(devices, 1) - 1)  # one core stays with each device's main process

    def _loader(self, dataset: ImageArrayDataset, batch_size: int, **kwargs) -> DataLoader:
        pin = self.pin_memory
        if pin is None:
            pin = self.trainer is not None and isinstance(self.trainer.accelerator, CUDAAccelerator)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=self.num_workers,
            worker_init_fn=seed_worker,
            pin_memory=pin,
            **kwargs,
        )

    def _device(self) -> torch.device:
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def _on_device(self, name: str, dataset: ImageArrayDataset) -> DeviceSplit:
        """``dataset`` as a ``DeviceSplit`` on the training device, copied there once (and again only if the statistics change)."""
        key = (name, str(self._device()), self.mean, self.std)
        if key not in self._device_splits:
            for old in [k for k in self._device_splits if k[0] == name]:
                del self._device_splits[old]  # one copy of each split on the device
            self._device_splits[key] = DeviceSplit(dataset.images, dataset.labels, self.mean, self.std, self._device())
        return self._device_splits[key]

    def _rank(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)

    def _epoch(self) -> int:
        # the epoch Lightning is about to run (current_epoch lags by one after a resume from an
        # end-of-epoch checkpoint); it is what Lightning passes to set_epoch
        return self.trainer.fit_loop.epoch_progress.current.processed if self.trainer is not None else 0

    def train_dataloader(self) -> DataLoader | TrainBatches:
        loader = self._train_loader()
        if self.trainer is not None and 0 < len(loader) < self.trainer.log_every_n_steps:
            # small data: log every epoch's steps rather than none (Lightning warns, and the curves stay empty)
            self.trainer.log_every_n_steps = len(loader)
        return loader

    def _train_loader(self) -> DataLoader | TrainBatches:
        if self.shuffle_seed is None:
            # the run's seed (seed_everything sets torch's); a resumed run gets it from the checkpoint
            self.shuffle_seed = torch.initial_seed()
        if self.pipeline == "device":
            rank, world_size = self._rank()
            return TrainBatches(
                self._on_device("train", self.train_set),
                self.batch_size,
                self.augmentation,
                self.shuffle_seed,
                self._epoch(),
                rank,
                world_size,
            )
        trainer = self.trainer  # None when used outside a Trainer
        loader_generator = torch.Generator()
        sampler = EpochSeededSampler(
            len(self.train_set),
            self.shuffle_seed,
            epoch=self._epoch(),
            loader_generator=loader_generator,
            reseed_in_process=None if self.num_workers else self._reseed_in_process,
            rank=trainer.global_rank if trainer is not None else 0,
        )
        # Workers are not persistent: each epoch's workers start from that epoch's seed, which
        # is what makes a resumed epoch identical (a fork per epoch costs well under a second).
        return self._loader(
            self.train_set,
            self.batch_size,
            sampler=sampler,
            generator=loader_generator,
            # a ragged last batch would give BatchNorm a noisy small-batch estimate
            drop_last=True,
        )

    def _reseed_in_process(self, seed: int) -> None:
        seed_augmentation(self.train_set.transform, seed)

    def state_dict(self) -> dict:
        return {"shuffle_seed": self.shuffle_seed, "mean": list(self.mean), "std": list(self.std)}

    def load_state_dict(self, state_dict: dict) -> None:
        # a checkpoint is data: each value is checked before it seeds or normalizes anything
        if not isinstance(state_dict, dict):
            raise CheckpointError(
                f"the checkpoint's data state is a {type(state_dict).__name__}, not a mapping: {EDITED}"
            )
        seed = state_dict.get("shuffle_seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**64):
            raise CheckpointError(
                f"the checkpoint's data state holds shuffle_seed {str(seed)[:40]}, not a seed: {EDITED}"
            )
        self.shuffle_seed = seed
        if not state_dict.get("mean"):
            raise CheckpointError(f"the checkpoint's data state holds no training statistics: {EDITED}")
        checked = check_preprocessing(
            {**state_dict, "class_names": list(self.class_names())}, "the checkpoint's data state"
        )
        self.mean, self.std = tuple(checked["mean"]), tuple(checked["std"])
        if hasattr(self, "train_set"):
            self._build_transforms()

    def _evaluation(self, name: str, dataset: ImageArrayDataset) -> DataLoader | EvalBatches:
        if self.pipeline == "device":
            return EvalBatches(self._on_device(name, dataset), self.eval_batch_size, *self._rank())
        return self._loader(dataset, self.eval_batch_size)

    def val_dataloader(self) -> DataLoader | EvalBatches | list:
        # no validation split: Lightning skips the validation loop for an empty list
        return self._evaluation("val", self.val_set) if len(self.val_set) else []

    def test_dataloader(self) -> DataLoader | EvalBatches:
        return self._evaluation("test", self.test_set)

    def predict_dataloader(self) -> DataLoader:
        if self.predict_dir is None:  # the built-in test split, each item named by split and index
            names = [f"test[{i}]" for i in range(len(self.test_set))]
            if self.pipeline == "device":  # a DataLoader reading the device's copy: batch indices name predictions
                return DataLoader(
                    DeviceImages(self._on_device("test", self.test_set), names),
                    batch_size=self.eval_batch_size,
                    collate_fn=already_batched,
                )
            dataset = ImageArrayDataset(self.test_set.images, self.test_set.labels, self.test_set.transform, names)
            return self._loader(dataset, self.eval_batch_size)
        images, paths = decode_folder(self.predict_dir, self.image_size, sources.MAX_MEMBERS)
        labels = np.full(len(images), -1, dtype=np.int64)  # unknown
        return self._loader(ImageArrayDataset(images, labels, self.test_set.transform, paths), self.eval_batch_size)
