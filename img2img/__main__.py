"""``python -m img2img`` (also ``accelerate launch -m img2img ...`` and ``torchrun -m img2img ...``)."""

import sys

from img2img.cli import main

if __name__ == "__main__":
    sys.exit(main())
