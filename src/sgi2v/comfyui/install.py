"""Install the SG-I2V nodes into a ComfyUI folder: writes COMFYUI_DIR/custom_nodes/sgi2v/__init__.py, which
imports the nodes from the sgi2v package. Run it with the Python that runs ComfyUI, after
`python -m pip install sgi2v` with that Python."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["ENTRY", "install", "add_arguments", "run"]

#: The ``custom_nodes/<name>/__init__.py`` that ComfyUI's loader runs.
ENTRY = '''"""SG-I2V nodes for ComfyUI, from the installed sgi2v package (written by `sgi2v comfyui-install`)."""
try:
    from sgi2v.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
except ImportError as err:
    raise ImportError(f"SG-I2V nodes: sgi2v cannot be imported by the Python that runs ComfyUI ({err}); "
                      "install it with that Python: python -m pip install sgi2v") from err
'''


def install(comfyui_dir: str | os.PathLike, name: str = "sgi2v") -> Path:
    """Write ``custom_nodes/<name>/__init__.py`` in ``comfyui_dir`` (the ComfyUI folder, or the folder given
    to its ``--base-directory``); returns its path.

    Running it again is harmless. Raises ``ValueError`` naming the path when ``comfyui_dir`` has no
    ``custom_nodes/`` folder or ``custom_nodes/<name>`` holds something else (another pack, or a link).
    """
    from ..generation import write_text_atomic

    root = Path(comfyui_dir).expanduser()
    if not (root / "custom_nodes").is_dir():
        raise ValueError(f"{root}: not a ComfyUI folder (no custom_nodes/ in it)")
    if not name or Path(name).name != name or name.startswith("."):
        raise ValueError(f"--name: expected a plain folder name, got {name!r}")
    folder = root / "custom_nodes" / name
    entry = folder / "__init__.py"
    if folder.is_symlink() or folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: exists and is not a folder (a link to the pack works as it is; remove it to use this "
                         "command, or choose another --name)")
    if entry.exists() and entry.read_text(encoding="utf-8", errors="replace") != ENTRY:
        raise ValueError(f"{entry}: exists and is not the SG-I2V entry; remove it or choose another --name")
    folder.mkdir(exist_ok=True)
    write_text_atomic(entry, ENTRY)
    return entry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..paths import IN_FOLDER, path_option

    path_option(parser.add_argument("comfyui_dir", metavar="COMFYUI_DIR", help="the ComfyUI folder (or its --base-directory): "
                                    "the one holding custom_nodes/"), IN_FOLDER, "ComfyUI folder")
    parser.add_argument("--name", default="sgi2v", help="folder name under custom_nodes/ (default sgi2v)")


def run(args: argparse.Namespace) -> int:
    entry = install(args.comfyui_dir, args.name)
    print(f"wrote {entry}")
    print(f"ComfyUI must run with a Python where sgi2v is installed (this command ran with {sys.executable}); "
          "restart ComfyUI to load the nodes (category SG-I2V)")
    return 0
