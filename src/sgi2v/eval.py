"""Short name for :mod:`sgi2v.evaluation`: ``from sgi2v.eval import objmc``."""

from .evaluation import *  # noqa: F401,F403
from .evaluation import __all__  # noqa: F401
