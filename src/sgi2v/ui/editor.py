"""The web app's trajectory editor: a canvas in the page (``editor.js``) that edits the trajectory object.

The editor's value is the trajectory object as JSON text, in the documented format
(:mod:`sgi2v.trajectory`) and in pixels of the uploaded image: the browser writes it after each
finished edit (mouse moves stay in the browser), the server reads it at Generate, and a server
handler that returns a new value (a loaded file) replaces what is drawn. A second, hidden field
carries the *scene*: the picture as the model gets it and how the upload's pixels map onto it
(:func:`scene_json`).
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from PIL import Image

from .. import trajectory
from ..fitting import Fit
from ..trajectory import TrajectoryError, read_json_text

__all__ = ["TIMINGS", "EditorBlock", "build_editor", "editor_script", "scene_json", "read_editor_value"]

#: The per-box ``timing`` values the trajectory format accepts (none where the format has no ``timing``):
#: the editor offers a timing choice only when there is one.
TIMINGS: tuple[str, ...] = trajectory.TIMINGS
#: Largest picture (pixels) sent to the page as PNG; larger ones go as JPEG (the editor only shows it).
PNG_LIMIT = 300_000


def editor_script() -> str:
    """The editor's JavaScript (``sgi2v/ui/editor.js``, shipped with the package)."""
    return resources.files("sgi2v.ui").joinpath("editor.js").read_text(encoding="utf-8")


def scene_json(prepared: Image.Image, fit: Fit, num_frames: int, message: str | None = None, error: bool = False) -> str:
    """What the editor needs to show ``prepared`` and map the upload's pixels onto it, as JSON text.

    Args:
        prepared: the image as the pipeline gets it (output size, after the fit).
        fit: how the upload (``fit.source``) became ``prepared`` (``fit.size``).
        num_frames: frames of the video: the path's ticks are drawn at each frame.
        message: shown under the canvas (an error in red with ``error``).
    """
    buffer = io.BytesIO()
    rgb = prepared.convert("RGB")
    if rgb.size[0] * rgb.size[1] <= PNG_LIMIT:
        rgb.save(buffer, format="PNG")
        mime = "image/png"
    else:
        rgb.save(buffer, format="JPEG", quality=90)
        mime = "image/jpeg"
    scene = {
        "image": f"data:{mime};base64," + base64.b64encode(buffer.getvalue()).decode("ascii"),
        "source": list(fit.source), "size": list(fit.size), "crop": list(fit.crop), "placed": list(fit.placed),
        "num_frames": int(num_frames), "timings": list(TIMINGS),
    }
    if message is not None:
        scene["message"], scene["error"] = message, bool(error)
    return json.dumps(scene)


def read_editor_value(text: str | None) -> dict:
    """The editor's value (JSON text; empty: nothing drawn) -> the trajectory object, not yet checked
    (the generation checks it as it checks a trajectory file).

    Raises:
        TrajectoryError: not a JSON object; the message starts with ``drawing:``.
    """
    data = read_json_text(text or '{"boxes": []}', "drawing", TrajectoryError)
    if not isinstance(data, dict):
        raise TrajectoryError(f"drawing: expected a JSON object with a 'boxes' list, got {type(data).__name__}")
    return data


@dataclass
class EditorBlock:
    """The editor's components: ``editor`` (value: the trajectory JSON text) and ``scene`` (hidden: the picture)."""

    editor: Any
    scene: Any


def build_editor(gr, elem_id: str = "editor") -> EditorBlock:
    """Adds the editor to the current Blocks; returns its components.

    The editor's page object is ``window.sgi2vEditor`` (see ``mount`` in ``editor.js``); its value
    changes (``editor.change``) after each finished edit. A handler shows another picture by
    returning :func:`scene_json` to ``scene``, and replaces the drawing (one undo step in the page) by
    returning the trajectory object's JSON text to ``editor`` (``""``: nothing drawn).
    """
    on_load = editor_script() + """
const mountPoint = element.querySelector('.sgi2v-mount');
const editor = SGI2VEditor.mount(mountPoint, {onChange: (text) => { props.value = text; }});
window.sgi2vEditor = editor;
if (props.value) editor.setTrajectory(props.value);
watch('value', () => editor.setTrajectory(props.value || ''));
"""
    editor = gr.HTML(value="", html_template='<div class="sgi2v-mount"></div>', js_on_load=on_load,
                     elem_id=elem_id, padding=False, apply_default_css=False)
    scene = gr.Textbox(value="", visible="hidden", elem_id=f"{elem_id}-scene", show_label=False)
    scene.change(None, [scene], None, js="(scene) => { if (window.sgi2vEditor) window.sgi2vEditor.setScene(scene); return []; }",
                 queue=False)
    return EditorBlock(editor=editor, scene=scene)
