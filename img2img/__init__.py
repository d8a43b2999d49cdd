"""img2img: image-to-image translation with GANs."""

__version__ = "0.1.0"

# ``img2img.load`` and ``img2img.Translator`` import torch, so they are resolved on first
# use (PEP 562): ``import img2img`` and ``img2img --help`` stay fast.
_LAZY = {"load": "img2img.inference", "Translator": "img2img.inference"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'img2img' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
