"""The picture the web app's user draws on: the upload fitted to the output size. Plain Python, no gradio.

The drawing itself is the trajectory object (the documented JSON format, in the upload's pixels),
edited in the browser by ``editor.js`` (see :mod:`sgi2v.ui.editor`). The editor shows the *prepared*
image, the upload fitted to the output size as the ``image_fit`` setting says (stretched, cropped or
padded), exactly the image the pipeline receives; a :class:`~sgi2v.fitting.Fit` maps between the
upload's pixels and the prepared image's.
"""

from __future__ import annotations

from PIL import Image

from ..fitting import Fit

__all__ = ["fit_image"]


def fit_image(image: Image.Image, width: int, height: int, mode: str = "stretch") -> tuple[Image.Image, Fit]:
    """The image as the pipeline will get it (the ``image_fit`` ``mode``) and its :class:`~sgi2v.fitting.Fit`."""
    fit = Fit.make(mode, image.size, (int(width), int(height)))
    return fit.image(image), fit
