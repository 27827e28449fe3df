"""What a generation costs before it runs: peak device memory and FLOPs of each phase, per memory mode.

- :mod:`.tracker`: live tensor bytes of a computation (measurement on real tensors, prediction on meta ones).
- :mod:`.graph`: the pipeline's phases traced on ``meta`` tensors from the model's configurations.
- :mod:`.plan`: the modes (checkpointing, model offload), what fits a memory budget, and what ``auto`` picks.
- :mod:`.measure`: a real pipeline call measured phase by phase.

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
