"""Live tensor bytes: how much tensor storage exists at each moment of a computation, and its peak.

:class:`LiveTensorBytes` is a dispatch mode: every ATen call made inside it reports its tensors, and
the mode keeps a weak reference to each distinct storage it has seen (views share their base's
storage and count once). A storage stops counting when it is freed. The figure after each call is
the sum of the live storages' sizes on the chosen device, so the peak is what the computation held at
its fullest, to the granularity of one ATen call (a kernel's private scratch memory is not a tensor
and is not counted).

Checking every storage for expiry after every call would cost time quadratic in the number of live
tensors, so the mode keeps an upper bound (frees not yet seen) and checks only when that bound passes the
peak by more than ``tolerance`` (default 0.2 %): the peak is exact to within that fraction, never above.

With ``count_flops`` it also adds up the FLOPs of each call by torch's per-operator formulas
(``torch.utils.flop_counter``), in the same pass.

It works the same on real tensors (a measurement) and on ``meta`` tensors (a prediction: shapes and
lifetimes without data), which is what :mod:`sgi2v.cost` relies on.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import flop_registry

__all__ = ["LiveTensorBytes"]


class LiveTensorBytes(TorchDispatchMode):
    """Counts the bytes of live tensor storages on ``device`` (a device type such as ``"cpu"``,
    ``"cuda"`` or ``"meta"``; ``None``: every device).

    ``current`` and ``peak`` are in bytes. Tensors that exist before the mode is entered count from
    the first call that uses them, or at once if passed to :meth:`track` (weights, inputs).

    Example::

        with LiveTensorBytes("cpu") as live:
            live.track(model)
            model(x)
        print(live.peak)
    """

    def __init__(self, device: str | None = None, tolerance: float = 0.002, count_flops: bool = False):
        super().__init__()
        self.device = device
        self.tolerance = tolerance
        self.count_flops = count_flops
        self.flops = 0  # with count_flops: of the matrix products, convolutions and attention seen
        self._live: dict[int, tuple[StorageWeakRef, int]] = {}  # storage address -> (weak ref, bytes)
        self._ignored: dict[int, StorageWeakRef] = {}
        self.current = 0  # an upper bound between checks: storages freed since the last check still count
        self.peak = 0

    def track(self, *objects) -> "LiveTensorBytes":
        """Count these tensors, or every parameter and buffer of these modules, from now on."""
        for obj in objects:
            if isinstance(obj, torch.nn.Module):
                self._add(t for t in [*obj.parameters(), *obj.buffers()])
            else:
                self._add(t for t in tree_leaves(obj) if isinstance(t, torch.Tensor))
        return self

    def ignore(self, *modules: torch.nn.Module) -> "LiveTensorBytes":
        """Never count the parameters and buffers of these modules (while they are alive)."""
        for module in modules:
            for t in [*module.parameters(), *module.buffers()]:
                storage = t.untyped_storage()
                self._ignored[storage._cdata] = StorageWeakRef(storage)
        return self

    def reset_peak(self) -> None:
        """Start a new peak from what is live now."""
        self._prune()
        self.peak = self.current

    def live_bytes(self) -> int:
        """The bytes live now (freed storages dropped first)."""
        self._prune()
        self._observe()
        return self.current

    def _prune(self) -> None:
        dead = [key for key, (ref, _) in self._live.items() if ref.expired()]
        for key in dead:
            self.current -= self._live.pop(key)[1]

    def _watermark(self) -> int:
        """The lowest peak kept exact (the whole run's here)."""
        return self.peak

    def _observe(self) -> None:
        """Called with ``current`` exact: update the peaks."""
        if self.current > self.peak:
            self.peak = self.current

    def _add(self, tensors: Iterable[torch.Tensor]) -> None:
        for t in tensors:
            if self.device is not None and t.device.type != self.device:
                continue
            try:
                storage = t.untyped_storage()
            except (RuntimeError, NotImplementedError):  # sparse or otherwise storage-less tensors
                continue
            key = storage._cdata
            ignored = self._ignored.get(key)
            if ignored is not None and not ignored.expired():
                continue
            entry = self._live.get(key)
            if entry is not None and not entry[0].expired():
                continue
            if entry is not None:  # the address was freed and reused
                self.current -= entry[1]
            size = storage.nbytes()
            self._live[key] = (StorageWeakRef(storage), size)
            self.current += size
        if self.current > self._watermark() * (1 + self.tolerance):  # perhaps a new peak: count exactly
            self._prune()
            self._observe()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self._add(t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor))
        out = func(*args, **kwargs)
        self._add(t for t in tree_leaves(out) if isinstance(t, torch.Tensor))
        if self.count_flops:
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:  # torch's own per-operator formulas (two FLOPs per multiply-add)
                self.flops += int(formula(*args, **kwargs, out_val=out))
        return out
