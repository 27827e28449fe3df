"""Hyper-parameters of SG-I2V (Namekata et al., ICLR 2025)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .schema import LATENT_WINDOW, setting

__all__ = ["FEATURE_KINDS", "SGI2VConfig", "LATENT_WINDOW", "karras_sigmas", "latent_side_ratio", "latent_window"]

#: Number of denoising steps the paper's timestep window was chosen for.
PAPER_NUM_STEPS = 50
#: The paper's window (t of 50 steps).
PAPER_WINDOW = tuple(range(30, 46))
#: The latent (h, w) of SVD's native 576 x 1024 output, for which the paper's window was chosen.
SVD_LATENT_SIZE = (72, 128)
#: Pixels per latent cell of SVD's VAE (and of every model in its layout).
SVD_VAE_FACTOR = 8
#: SVD's noise schedule: Karras sigmas from ``sigma_max`` down to ``sigma_min`` (its scheduler's configuration).
SVD_SIGMA_MAX, SVD_SIGMA_MIN, KARRAS_RHO = 700.0, 0.002, 7.0
#: Group of the method's settings in the command line's help, the docs and the web form.
METHOD = "SG-I2V method (defaults: the paper's)"
#: Which features of the feature layers the loss compares (``feature_kind``); the first is the paper's.
FEATURE_KINDS = ("aligned", "self_attention", "layer_output")


def karras_sigmas(num_steps: int, sigma_max: float = SVD_SIGMA_MAX, sigma_min: float = SVD_SIGMA_MIN,
                  rho: float = KARRAS_RHO) -> list[float]:
    """The noise level of each of ``num_steps`` denoising steps, noisiest first (Karras et al. 2022)."""
    if num_steps == 1:
        return [sigma_max]
    hi, lo = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return [(hi + i / (num_steps - 1) * (lo - hi)) ** rho for i in range(num_steps)]


def latent_side_ratio(latent_size: tuple[int, int]) -> float:
    """How a latent's side compares with SVD's native 72 x 128 one: ``sqrt(h * w / (72 * 128))``."""
    h, w = latent_size
    return math.sqrt(h * w / (SVD_LATENT_SIZE[0] * SVD_LATENT_SIZE[1]))


def latent_window(latent_size: tuple[int, int], num_inference_steps: int,
                  sigma_range: tuple[float, float] = (SVD_SIGMA_MAX, SVD_SIGMA_MIN)) -> tuple[int, ...]:
    """The paper's window as noise levels, moved to a latent of another size: the ``t`` to optimise at.

    The paper's t 30-45 of 50 steps are SVD's noise levels sigma 374 down to 37, chosen for its 72 x 128
    latent. A given noise level hides an object of a smaller latent more (the noise averages out over fewer
    cells), so both ends are scaled by the ratio of the latents' sides (:func:`latent_side_ratio`), and each
    becomes the step of a ``num_inference_steps`` schedule whose sigma is nearest in log; the window is every
    step between. ``sigma_range`` is ``(sigma_max, sigma_min)`` of the model's own Karras schedule, SVD's by
    default: there, 72 x 128 at 50 steps gives the paper's 30-45 and a 16 x 16 latent (128 x 128 pixels) 21-33.
    A model whose schedule is already moved to its latent size (the ``sprites`` model's) gets the paper's t
    at its native size.
    """
    h, w = latent_size
    if h < 1 or w < 1 or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
        raise ValueError(f"latent_window needs a latent size and a number of steps >= 1, "
                         f"got {latent_size}, {num_inference_steps!r}")
    paper = karras_sigmas(PAPER_NUM_STEPS)
    scale = latent_side_ratio(latent_size)
    log_sigmas = [math.log(s) for s in karras_sigmas(num_inference_steps, *sigma_range)]

    def nearest_t(sigma: float) -> int:
        i = min(range(num_inference_steps), key=lambda k: abs(log_sigmas[k] - math.log(sigma)))
        return num_inference_steps - i

    ends = [nearest_t(paper[PAPER_NUM_STEPS - t] * scale) for t in (max(PAPER_WINDOW), min(PAPER_WINDOW))]
    return tuple(range(max(ends), min(ends) - 1, -1))


@dataclass(frozen=True)
class SGI2VConfig:
    """The method's settings; the defaults are the paper's and compute what the authors' code computes.

    Timesteps follow the paper's convention: with ``S`` denoising steps, the ``i``-th step (0-based) has
    timestep ``t = S - i``, so ``t`` runs from ``S`` (pure noise) down to ``1``.
    """

    optimize_timesteps: tuple[int, ...] = setting(  # t at which the latent is optimised (16 of 50 steps)
        PAPER_WINDOW, "timesteps t = steps - i at which the latent is optimised, e.g. 30-45 (given no value, the "
        "paper's 30-45 of 50 steps, moved to the same relative place for other step counts), or latent: the paper's noise "
        "levels moved to the output's latent size, for outputs much smaller than 576 x 1024", "timesteps", METHOD,
        label="Optimise at timesteps")
    iterations: int = setting(5, "AdamW iterations per optimised step; 0 gives plain SVD", "int", METHOD, minimum=0, maximum=1000,
                              label="Iterations per step")
    learning_rate: float = setting(0.21, "AdamW learning rate (other AdamW settings: PyTorch's)", "float", METHOD,
                                   minimum=1e-12, maximum=1e6, aliases=("lr",), label="Learning rate")
    feature_layers: tuple[str, ...] = setting(  # spatial transformers
        ("up_blocks.2.attentions.1", "up_blocks.2.attentions.2"),
        "the UNet's spatial transformers whose first self-attention gives the features", "names", METHOD, label="Feature layers")
    heatmap_sigma: float = setting(0.4, "std of the Gaussian loss weight inside each box, as a fraction of the half box size",
                                   "float", METHOD, minimum=1e-6, maximum=1e6, label="Heatmap sigma")
    high_frequency_reinit: bool = setting(True, "keep only the low frequencies of the optimised latent", "bool", METHOD,
                                          aliases=("hf_reinit",), label="High-frequency re-initialisation")
    low_pass_cutoff: float = setting(0.5, "Butterworth low-pass cutoff of the re-initialisation, normalised frequency in (0, 1]",
                                     "float", METHOD, minimum=1e-6, maximum=1.0, aliases=("cutoff",), label="Low-pass cutoff")
    butterworth_order: int = setting(4, "order of the Butterworth low-pass", "int", METHOD, minimum=1, maximum=64,
                                     label="Butterworth order")
    feature_kind: str = setting(  # last: saved ComfyUI workflows keep their widget order

        "aligned", "which features of the feature layers the loss compares: aligned (the paper's: each frame's queries "
        "attend to frame 0's keys and values, detached), self_attention (the layer's ordinary self-attention of each "
        "frame, before the output projection) or layer_output (the spatial transformer's output, like DIFT-style UNet "
        "features)", "choice", METHOD, choices=FEATURE_KINDS, label="Feature kind")

    def __post_init__(self) -> None:
        # Accept any iterable of ints / strings, but store tuples so the config stays hashable.
        try:
            timesteps = tuple(self.optimize_timesteps)
        except TypeError:
            raise ValueError(f"optimize_timesteps must be a sequence of ints, got {self.optimize_timesteps!r}") from None
        for t in timesteps:
            if isinstance(t, bool) or not isinstance(t, int) or t < 1:
                raise ValueError(f"optimize_timesteps must hold integers >= 1, got {t!r} in {timesteps}")
        if len(set(timesteps)) != len(timesteps):
            raise ValueError(f"optimize_timesteps has duplicates: {timesteps}")
        object.__setattr__(self, "optimize_timesteps", tuple(sorted(timesteps, reverse=True)))

        if isinstance(self.feature_layers, str):
            raise ValueError(f"feature_layers must be a sequence of layer names, got the string {self.feature_layers!r}")
        layers = tuple(self.feature_layers)
        if not layers:
            raise ValueError("feature_layers must name at least one spatial transformer, got none")
        for name in layers:
            if not isinstance(name, str) or not name:
                raise ValueError(f"feature_layers must hold non-empty module names, got {name!r}")
        if len(set(layers)) != len(layers):
            raise ValueError(f"feature_layers has duplicates: {layers}")
        object.__setattr__(self, "feature_layers", layers)
        if not isinstance(self.feature_kind, str) or self.feature_kind not in FEATURE_KINDS:
            raise ValueError(f"feature_kind must be one of {', '.join(FEATURE_KINDS)}, got {self.feature_kind!r}")

        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 0:
            raise ValueError(f"iterations must be an integer >= 0, got {self.iterations!r}")
        if isinstance(self.butterworth_order, bool) or not isinstance(self.butterworth_order, int) or self.butterworth_order < 1:
            raise ValueError(f"butterworth_order must be an integer >= 1, got {self.butterworth_order!r}")
        for name in ("learning_rate", "heatmap_sigma", "low_pass_cutoff"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not isinstance(self.high_frequency_reinit, bool):
            raise ValueError(f"high_frequency_reinit must be True or False, got {self.high_frequency_reinit!r}")

    @property
    def enabled(self) -> bool:
        """Whether any latent optimisation happens at all."""
        return self.iterations > 0 and len(self.optimize_timesteps) > 0

    def optimization_passes(self, num_inference_steps: int) -> int:
        """The optimisation passes of a run of ``num_inference_steps``: ``iterations`` at each of its steps
        ``t = num_inference_steps - i`` that is in ``optimize_timesteps``."""
        if not self.enabled:
            return 0
        return self.iterations * sum(1 for t in self.optimize_timesteps if 1 <= t <= num_inference_steps)

    def replace(self, **changes) -> "SGI2VConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def scaled_to_steps(self, num_inference_steps: int, reference_steps: int = PAPER_NUM_STEPS) -> "SGI2VConfig":
        """The same relative timestep window for another number of denoising steps.

        The paper's window t in [30, 45] of 50 steps becomes e.g. [15, 22] for 25 steps
        (each t maps to round(t * S / 50), duplicates dropped, at least 1).
        """
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be an integer >= 1, got {num_inference_steps!r}")
        if num_inference_steps == reference_steps:
            return self
        scaled = {max(1, min(num_inference_steps, round(t * num_inference_steps / reference_steps)))
                  for t in self.optimize_timesteps}
        return self.replace(optimize_timesteps=tuple(scaled))

    def to_dict(self) -> dict:
        """JSON-friendly form (tuples become lists)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "SGI2VConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown SGI2VConfig fields: {unknown}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
