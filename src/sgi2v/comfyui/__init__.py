"""SG-I2V nodes for ComfyUI: SG-I2V Load Model, Trajectory, Sampler and Draw Boxes.

ComfyUI loads a node pack from a folder in its ``custom_nodes/`` whose ``__init__.py`` exports
``NODE_CLASS_MAPPINGS`` and ``NODE_DISPLAY_NAME_MAPPINGS``. With sgi2v installed in ComfyUI's Python,
``sgi2v comfyui-install COMFYUI_DIR`` writes that file; a link from ``custom_nodes/sgi2v`` to this folder
works too (the import below is absolute for that reason). See docs/comfyui.md.
"""

from sgi2v.comfyui.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
