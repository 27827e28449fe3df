"""Declaring a setting once: its help, range and old names, and reading it from any surface.

A setting is a field of a frozen dataclass (:class:`sgi2v.SGI2VConfig` for the method,
:class:`sgi2v.settings.GenerationSettings` for sampling, device and files) whose metadata holds a
:class:`Spec`, made with :func:`setting`. The command line's options, the batch manifest's keys, the
web app's controls, the run record and the settings table in the docs are all derived from these
fields, so a setting has one name everywhere: the field's name (``num_inference_steps``) is the
record's key, the manifest's key and the form control's name, and ``--num-inference-steps`` is its
command-line flag. Older spellings (``--steps``, manifest ``steps``) are kept as aliases.

Plain Python, no torch: every value can be checked before anything heavy is imported.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["Spec", "setting", "specs", "parse_value", "describe", "flag"]

#: The ``timesteps`` value that asks for the paper's window moved to the output's latent size
#: (:func:`sgi2v.config.latent_window`, applied by :func:`sgi2v.settings.resolve_settings`).
LATENT_WINDOW = "latent"


@dataclass(frozen=True)
class Spec:
    """How a setting is read and shown.

    ``kind`` is one of ``int``, ``float``, ``bool``, ``choice``, ``timesteps`` (a set of integers, written
    ``30-45`` or ``30,35``), ``names`` (a list of names, written comma-separated), ``size`` (a positive width
    and height, written ``80x60`` or as a list ``[80, 60]``). ``minimum`` and
    ``maximum`` bound numbers (inclusive); ``multiple_of`` constrains integers; ``optional`` allows
    ``None`` (its meaning is in the help, e.g. "the model's number of frames"). ``aliases`` are older
    names accepted by the command line (as ``--alias``) and in manifests; ``scope`` is ``sample`` for
    settings that may differ from one video to the next and ``process`` for those fixed when the
    pipeline is loaded (device, dtype, offloading). ``group`` orders the command line's help and the
    form. ``form`` is False for settings that the web app's server decides, not the page.
    """

    help: str
    kind: str
    group: str
    minimum: float | None = None
    maximum: float | None = None
    multiple_of: int | None = None
    choices: tuple[str, ...] = ()
    choice_aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)
    optional: bool = False
    aliases: tuple[str, ...] = ()
    scope: str = "sample"
    form: bool = True
    label: str = ""  # the form's label; the help's first clause by default


def setting(default: Any, help: str, kind: str, group: str, **spec: Any) -> Any:
    """A dataclass field that is a setting (see :class:`Spec`)."""
    return dataclasses.field(default=default, metadata={"sgi2v": Spec(help=help, kind=kind, group=group, **spec)})


def specs(cls) -> dict[str, tuple[dataclasses.Field, Spec]]:
    """The settings of a settings dataclass, by name, in declaration order."""
    return {f.name: (f, f.metadata["sgi2v"]) for f in dataclasses.fields(cls) if "sgi2v" in f.metadata}


def flag(name: str) -> str:
    """The command-line flag of a setting: its name in kebab-case."""
    return "--" + name.replace("_", "-")


def _expected(spec: Spec) -> str:
    if spec.kind == "choice":
        return "one of " + ", ".join(spec.choices)
    words = {"int": "an integer", "float": "a number", "bool": "true or false",
             "timesteps": f"timesteps like 30-45 or 30,35,40 (or a list of integers), or {LATENT_WINDOW}",
             "names": "layer names, comma-separated (or a list of names)",
             "size": "a width and height like 80x60 (or a list [80, 60]), both > 0"}[spec.kind]
    bounds = []
    if spec.minimum is not None and spec.maximum is not None:
        bounds.append(f"from {spec.minimum:g} to {spec.maximum:g}")
    elif spec.minimum is not None:
        bounds.append(f">= {spec.minimum:g}")
    elif spec.maximum is not None:
        bounds.append(f"<= {spec.maximum:g}")
    if spec.multiple_of:
        bounds.append(f"a multiple of {spec.multiple_of}")
    return words + (" " + ", ".join(bounds) if bounds else "")


def parse_value(name: str, spec: Spec, value: Any) -> Any:
    """A setting's value from JSON (a manifest, a record, the page) or from text (the command line),
    checked against its spec; raises ``ValueError("name: expected ..., got ...")``."""

    def fail():
        raise ValueError(f"{name}: expected {_expected(spec)}, got {value!r}")

    if value is None or (isinstance(value, str) and spec.optional and value.strip().lower() in ("", "auto", "none")):
        if spec.optional:
            return None
        fail()
    kind = spec.kind
    if kind == "int":
        if isinstance(value, str):
            try:
                value = int(value.strip(), 10)
            except ValueError:
                fail()
        elif isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            value = int(value)  # a form's number field sends 14.0
        if isinstance(value, bool) or not isinstance(value, int):
            fail()
        _check_range(name, spec, value, fail)
        if spec.multiple_of and value % spec.multiple_of:
            fail()
        return value
    if kind == "float":
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                fail()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            fail()
        _check_range(name, spec, value, fail)
        return float(value)
    if kind == "bool":
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if not isinstance(value, bool):
            fail()
        return value
    if kind == "choice":
        if isinstance(value, bool) and spec.choice_aliases:  # e.g. gradient_checkpointing: true -> "on"
            value = str(value).lower()
        if not isinstance(value, str):
            fail()
        value = value.strip()
        value = spec.choice_aliases.get(value.lower(), value)
        if value not in spec.choices and not _open_choice(spec, value):
            fail()
        return value
    if kind == "timesteps":
        if isinstance(value, str) and value.strip().lower() == LATENT_WINDOW:
            return LATENT_WINDOW  # resolved to integers where the output's size and steps are known
        if isinstance(value, str):
            return _timesteps_text(value, fail)
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            if any(v < 1 for v in value):
                fail()
            return tuple(sorted(set(value), reverse=True))
        fail()
    if kind == "names":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",")]
        if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            fail()
        return tuple(v.strip() for v in value)
    if kind == "size":
        pair = value
        if isinstance(value, str):
            try:
                pair = [float(v) for v in value.strip().lower().replace(",", "x").split("x")]
            except ValueError:
                fail()
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or any(
                isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0 for v in pair):
            fail()
        return (float(pair[0]), float(pair[1]))
    raise AssertionError(kind)  # pragma: no cover


def _open_choice(spec: Spec, value: str) -> bool:
    """Devices: ``cuda:N`` besides the listed names."""
    if "cuda" in spec.choices and value.startswith("cuda:"):
        return value[5:].isdigit()
    return False


def _check_range(name: str, spec: Spec, value: float, fail) -> None:
    if spec.minimum is not None and value < spec.minimum or spec.maximum is not None and value > spec.maximum:
        fail()


def _timesteps_text(text: str, fail) -> tuple[int, ...]:
    values: set[int] = set()
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        fail()
    for part in parts:
        try:
            if "-" in part[1:]:
                lo, hi = (int(v) for v in part.split("-", 1))
                values.update(range(min(lo, hi), max(lo, hi) + 1))
            else:
                values.add(int(part))
        except ValueError:
            fail()
    if min(values) < 1 or len(values) > 10_000:
        fail()
    return tuple(sorted(values, reverse=True))


def describe(name: str, field: dataclasses.Field, spec: Spec) -> str:
    """The help text with the default (and choices), as the command line and the docs show it."""
    default = field.default
    if spec.kind == "choice":
        listed = all(choice in spec.help for choice in spec.choices)
        return f"{spec.help} ({'' if listed else ', '.join(spec.choices) + '; '}default {default})"
    if spec.kind == "bool":
        return f"{spec.help} (default {'on' if default else 'off'})"
    if default is None or "(default" in spec.help:  # the help says it (a default that depends on the model)
        return spec.help
    if spec.kind == "timesteps":
        shown = f"{min(default)}-{max(default)}"
    elif spec.kind == "names":
        shown = ",".join(default)
    else:
        shown = f"{default:g}" if isinstance(default, float) else str(default)
    return f"{spec.help} (default {shown})"
