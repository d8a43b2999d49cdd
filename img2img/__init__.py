"""img2img: image-to-image translation with GANs."""

__version__ = "0.1.0"
