"""What a generation costs before it runs: peak device memory and FLOPs of each phase, per memory mode, and its time.

- :mod:`.tracker`: live tensor bytes of a computation (measurement on real tensors, prediction on meta ones).
- :mod:`.graph`: the pipeline's phases traced on ``meta`` tensors from the model's configurations.
- :mod:`.plan`: the modes (checkpointing, model offload), what fits a memory budget, and what ``auto`` picks.
- :mod:`.measure`: a real pipeline call measured phase by phase.
- :mod:`.timing`: the time of a run on the device here, from a short run with random weights (``--measure``).

Importing this package imports no torch (the ``sgi2v estimate`` command is registered from it).
"""

__all__ = ["LiveTensorBytes", "estimate"]


def __getattr__(name):
    if name == "LiveTensorBytes":
        from .tracker import LiveTensorBytes

        return LiveTensorBytes
    if name == "estimate":
        from .plan import estimate

        return estimate
    raise AttributeError(name)
