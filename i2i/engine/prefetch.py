"""The next batch on its way to the device while the current step runs.

On CUDA each batch is moved by ``to_device`` (``Method.to_device``: ``non_blocking`` copies from the
loader's pinned memory, then any on-device normalisation) on a side stream, right after the
previous step was queued; the compute stream waits for that copy only when it uses the batch
(``wait_stream``), and ``record_stream`` keeps the allocator from reusing its memory early. The host
never waits for the device here. On the CPU it is a plain loop over the loader (nothing to overlap).
Same pattern as NVIDIA Apex's ``data_prefetcher`` and nanoGPT's "prefetch the next batch".
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import torch

Batch = dict[str, Any]


class Prefetcher:
    """Iterates ``loader``, yielding ``to_device(batch)`` (``channels_last`` applied to 4-D tensors)."""

    def __init__(self, loader: Iterable[Batch], to_device: Callable[[Batch], Batch], device: torch.device,
                 channels_last: bool = False) -> None:
        self.loader, self.to_device, self.device, self.channels_last = loader, to_device, device, channels_last

    def _move(self, batch: Batch) -> Batch:
        batch = self.to_device(batch)
        if self.channels_last:
            batch = {k: v.contiguous(memory_format=torch.channels_last) if isinstance(v, torch.Tensor) and v.ndim == 4
                     else v for k, v in batch.items()}
        return batch

    def __iter__(self) -> Iterator[Batch]:
        if self.device.type != "cuda":
            for batch in self.loader:
                yield self._move(batch)
            return
        stream = torch.cuda.Stream(self.device)
        compute = torch.cuda.current_stream(self.device)
        for batch in self.loader:
            with torch.cuda.stream(stream):
                batch = self._move(batch)
            compute.wait_stream(stream)  # device-side: the step's kernels start after the copy
            for v in batch.values():
                if isinstance(v, torch.Tensor) and v.device.type == "cuda":
                    v.record_stream(compute)
            yield batch  # the step is queued (no host sync in it), so the next copy overlaps it


__all__ = ["Prefetcher"]
