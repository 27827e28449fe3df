"""The example workflows of docs/comfyui/, in ComfyUI's API format (what ``POST /prompt`` takes) and UI format
(what the editor loads, by drag and drop or Workflow > Open), both made from one description here.

Regenerate the files after changing a node's inputs (a test fails until they match)::

    python -m sgi2v.comfyui.workflows docs/comfyui

Widget values of our nodes are the inputs' defaults (from the settings' declarations) unless an example
sets them; those of ComfyUI's and KJNodes' nodes are listed here in their widgets' order.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..settings import DEFAULT_MODEL
from .nodes import NODE_CLASS_MAPPINGS

__all__ = ["Node", "EXAMPLES", "api_format", "ui_format", "write_examples"]

#: The rocket example's image and trajectory, as in ``sgi2v/examples/rocket`` (copy the image into ComfyUI's input/).
ROCKET_IMAGE = "sgi2v-rocket.jpg"
ROCKET_TRAJECTORY = {"boxes": [
    {"label": "rocket", "box": [296, 120, 348, 412], "path": [[322, 266], [322, 236], [322, 166]], "interpolation": "spline"},
    {"label": "left tower", "box": [0, 0, 92, 420], "static": True},
    {"label": "right tower", "box": [556, 0, 640, 420], "static": True},
]}
# The same motion drawn in SplineEditor on a 640 x 427 canvas (the image's size): the rocket's centre rising, and the
# towers as static anchors. points_to_sample is the number of frames; the Trajectory node resamples any count anyway.
# The editor samples ``coordinates`` from the control points in ``points_store`` (sampling_method path: evenly along it).
# The editor computes them in float32 and writes compact JSON; so do these, so a workflow it saves reads the same.
SPLINE_POINTS = [{"x": 322, "y": float(np.float32(266 - 100 * f / 13))} for f in range(14)]
SPLINE_POINTS = [{"x": p["x"], "y": int(p["y"]) if p["y"].is_integer() else p["y"]} for p in SPLINE_POINTS]  # JSON as JS writes it
_COMPACT = dict(separators=(",", ":"))


@dataclass
class Node:
    """One node of an example: its id, class, widget values by name (in widget order for foreign nodes),
    links ``input -> (node id, output index)`` and its outputs ``(name, type)`` (ours: from the class)."""

    id: int
    class_type: str
    widgets: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)
    outputs: list = field(default_factory=list)
    pos: tuple[int, int] = (0, 0)

    def widget_values(self) -> dict:
        """Every widget's value, in the widgets' order (ours: declared defaults, overridden by ``widgets``)."""
        node = NODE_CLASS_MAPPINGS.get(self.class_type)
        if node is None:
            return dict(self.widgets)
        declared = node.INPUT_TYPES()
        values = {}
        for name, spec in {**declared["required"], **declared.get("optional", {})}.items():
            kind, options = (tuple(spec) + ({},))[:2]
            if isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN"):
                values[name] = self.widgets.get(name, options.get("default", kind[0] if isinstance(kind, list) else ""))
        unknown = set(self.widgets) - set(values)
        if unknown:
            raise ValueError(f"{self.class_type}: no widgets named {sorted(unknown)}")
        return values

    def output_types(self) -> list[tuple[str, str]]:
        node = NODE_CLASS_MAPPINGS.get(self.class_type)
        return list(zip(node.RETURN_NAMES, node.RETURN_TYPES)) if node else list(self.outputs)


def _common_tail(sampler: int) -> list[Node]:
    """Frames to an MP4 and the overlay of the target boxes to PNG frames (ComfyUI's own nodes)."""
    return [
        Node(6, "SGI2VDrawBoxes", links={"images": (sampler, 0), "boxes": (sampler, 1)}, pos=(1500, 420)),
        Node(7, "CreateVideo", {"fps": 7.0}, {"images": (sampler, 0)}, [("VIDEO", "VIDEO")], pos=(1500, 100)),
        Node(8, "SaveVideo", {"filename_prefix": "sgi2v/video", "format": "mp4", "codec": "h264"}, {"video": (7, 0)},
             pos=(1850, 100)),
        Node(9, "SaveImage", {"filename_prefix": "sgi2v/overlay"}, {"images": (6, 0)}, pos=(1850, 420)),
    ]


def _load_image() -> Node:
    return Node(1, "LoadImage", {"image": ROCKET_IMAGE, "upload": "image"}, outputs=[("IMAGE", "IMAGE"), ("MASK", "MASK")],
                pos=(0, 100))


def _load_model() -> Node:
    return Node(2, "SGI2VLoadModel", {"model": DEFAULT_MODEL}, pos=(0, 500))


#: name -> nodes of each example.
EXAMPLES = {
    "sgi2v_only": [
        _load_image(), _load_model(),
        Node(3, "SGI2VTrajectory", {"trajectory_json": json.dumps(ROCKET_TRAJECTORY)}, pos=(400, 300)),
        Node(5, "SGI2VSampler", {"width": 1024, "height": 576}, {"model": (2, 0), "image": (1, 0), "trajectory": (3, 0)},
             pos=(1000, 100)),
        *_common_tail(5),
    ],
    "sgi2v_spline_editor": [
        _load_image(), _load_model(),
        Node(4, "SplineEditor", {
            "points_store": json.dumps([{"points": [{"x": 322, "y": 266}, {"x": 322, "y": 166}], "color": "#1f77b4",
                                         "name": "Spline 1"}], **_COMPACT),  # the editor's own layout: control points per spline
            "coordinates": json.dumps([SPLINE_POINTS], **_COMPACT), "mask_width": 640, "mask_height": 427, "points_to_sample": 14,
            "sampling_method": "path", "interpolation": "cardinal", "tension": 0.5, "repeat_output": 1,
            "float_output_type": "list", "min_value": 0.0, "max_value": 1.0,
        }, {"bg_image": (1, 0)}, [("mask", "MASK"), ("coord_str", "STRING"), ("float", "FLOAT"), ("count", "INT"),
                                   ("normalized_str", "STRING")], pos=(400, 0)),
        Node(3, "SGI2VTrajectory", {"canvas_width": 640, "canvas_height": 427, "box_width": 52, "box_height": 292,
                                    "timing": "speed", "static_boxes": "[[0, 0, 92, 420], [556, 0, 640, 420]]"},
             {"coord_str": (4, 1)}, pos=(700, 400)),
        Node(5, "SGI2VSampler", {"width": 1024, "height": 576}, {"model": (2, 0), "image": (1, 0), "trajectory": (3, 0)},
             pos=(1100, 100)),
        *_common_tail(5),
    ],
}


def api_format(nodes: list[Node]) -> dict:
    """The workflow as ``POST /prompt`` takes it: node id -> class_type and inputs (values and [id, output] links)."""
    out = {}
    for node in nodes:
        values = {k: v for k, v in node.widget_values().items() if k != "upload"}
        inputs = {**values, **{name: [str(src), slot] for name, (src, slot) in node.links.items()}}
        out[str(node.id)] = {"class_type": node.class_type, "inputs": inputs}
    return out


def ui_format(nodes: list[Node]) -> dict:
    """The workflow as the editor saves it: nodes with positions and widget values, and links."""
    by_id = {node.id: node for node in nodes}
    links, ui_nodes = [], []
    outgoing: dict[tuple[int, int], list[int]] = {}
    for node in nodes:
        for name, (src, slot) in node.links.items():
            link_id = len(links) + 1
            links.append([link_id, src, slot, node.id, name, by_id[src].output_types()[slot][1]])
            outgoing.setdefault((src, slot), []).append(link_id)
    for order, node in enumerate(nodes):
        values = node.widget_values()
        widget_values = []
        for name, value in values.items():
            widget_values.append(value)
            if name == "seed":
                widget_values.append("fixed")  # the editor's "control after generate"
        inputs = []
        for index, link in enumerate(links):
            if link[3] == node.id:
                name = link[4]
                entry = {"name": name, "type": link[5], "link": link[0]}
                if name in values:
                    entry["widget"] = {"name": name}
                inputs.append(entry)
        ui_nodes.append({
            "id": node.id, "type": node.class_type, "pos": list(node.pos), "size": [320, 200], "flags": {}, "order": order,
            "mode": 0, "inputs": inputs,
            "outputs": [{"name": name, "type": kind, "slot_index": i, "links": outgoing.get((node.id, i), [])}
                        for i, (name, kind) in enumerate(node.output_types())],
            "properties": {"Node name for S&R": node.class_type}, "widgets_values": widget_values,
        })
    slots = {}
    for link in links:  # the editor's links name the target input by its index among the node's inputs
        target = next(n for n in ui_nodes if n["id"] == link[3])
        slots[link[0]] = next(i for i, entry in enumerate(target["inputs"]) if entry["link"] == link[0])
    return {
        "last_node_id": max(by_id), "last_link_id": len(links), "nodes": ui_nodes,
        "links": [[lid, src, slot, dst, slots[lid], kind] for lid, src, slot, dst, _, kind in links],
        "groups": [], "config": {}, "extra": {}, "version": 0.4,
    }


def write_examples(folder: str | Path) -> list[Path]:
    """Write ``<name>.api.json`` and ``<name>.ui.json`` of every example into ``folder``; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, nodes in EXAMPLES.items():
        for suffix, make in ((".api.json", api_format), (".ui.json", ui_format)):
            path = folder / f"{name}{suffix}"
            path.write_text(json.dumps(make(nodes), indent=1) + "\n", encoding="utf-8")
            written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover
    for written_path in write_examples(sys.argv[1] if len(sys.argv) > 1 else "docs/comfyui"):
        print(written_path)
