"""The training data order: a pure function of ``(seed, epoch)``, so a resumed run rebuilds it.

A fresh ``torch.Generator`` per epoch shuffles the indices and the last partial batch is dropped;
a resumed run rebuilds the epoch's order and starts at the first micro-batch not yet consumed.
With several processes, process ``rank`` takes its share of every batch of the one global order.
Items draw no randomness of their own (a flip/rotation is part of the item's index, see
:mod:`radiodiff.data.items`), so DataLoader workers (``runtime.num_workers``) change nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the ``n`` training samples in ``epoch``: a pure function of (seed, epoch)."""
    digest = hashlib.sha256(f"radiodiff-data-order:{seed}:{epoch}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    return torch.randperm(n, generator=generator)


class ResumableBatchSampler:
    """Endless batches of indices: epoch after epoch of ``epoch_permutation``, from micro-batch ``start``.

    ``batch_size`` is the global micro-batch: with ``world`` processes, process ``rank`` takes
    its ``rank``-th share of each (Accelerate's ``split_batches``), so N processes see the samples
    one process would. The training loop never reaches an epoch end, so Accelerate's
    accumulation counter is never reset by one, and the position to resume from is just the
    number of micro-batches consumed.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ValueError(f"global batch {batch_size} does not split over {world} processes")
        self.n, self.batch_size, self.seed, self.start = n, batch_size, seed, start
        self.rank, self.world = rank, world
        self.per_epoch = n // batch_size

    def __iter__(self) -> Iterator[list[int]]:
        micro = self.start
        epoch, order = -1, None
        share = self.batch_size // self.world
        while True:
            e, b = divmod(micro, self.per_epoch)
            if e != epoch:
                epoch, order = e, epoch_permutation(self.n, self.seed, e)
            first = b * self.batch_size + self.rank * share
            yield order[first : first + share].tolist()
            micro += 1


class DeviceLoader:
    """A DataLoader whose batches arrive on the training device."""

    def __init__(self, loader: DataLoader, device: torch.device):
        self.loader, self.device = loader, device

    def __iter__(self):
        from accelerate.utils import send_to_device

        for batch in self.loader:
            yield send_to_device(batch, self.device)

    def __len__(self) -> int:
        return len(self.loader)


def train_loader(dataset, batch_size: int, seed: int, start: int, rank: int, world: int, workers: int, pin: bool):
    """Endless training batches from micro-batch ``start`` (see :class:`ResumableBatchSampler`)."""
    return DataLoader(
        dataset,
        batch_sampler=ResumableBatchSampler(len(dataset), batch_size, seed, start=start, rank=rank, world=world),
        num_workers=workers,
        pin_memory=pin,
        # DataLoader seeds its workers from this generator; without one it would draw from the
        # global RNG at every new iterator and shift the task's own random numbers after a resume.
        generator=torch.Generator().manual_seed(seed),
    )


def val_loader(dataset, batch_size: int, seed: int, workers: int, device: torch.device) -> DeviceLoader | None:
    """The validation batches in order, on the device; None without a validation set."""
    if dataset is None or len(dataset) == 0:
        return None
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
    )
    return DeviceLoader(loader, device)
