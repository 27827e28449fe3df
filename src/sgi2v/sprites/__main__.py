"""``python -m sgi2v.sprites -o FOLDER``: the same as ``sgi2v train-sprites -o FOLDER``."""

import sys

from ..cli import main

sys.exit(main(["train-sprites", *sys.argv[1:]]))
