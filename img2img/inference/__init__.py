"""Inference: a trained generator run on images of any size. This package owns finding
and reading a model (a run, model or checkpoint directory, or ``hf://owner/name[@rev]`` on
the Hub) and the device it runs on (:mod:`.loading`); the :class:`Translator`, which asks
the task how an RGB image becomes the network's input and back and the network's size
contract how any size fits (:mod:`.translator`); tiles, their blending weights and the
canvas that blends them (:mod:`.tiling`); running tiles with the whole image's
normalisation statistics and the overlap a network's receptive field needs
(:mod:`.passes`); third-party SR weights through spandrel (:mod:`.external`); the inputs
and outputs it takes and gives, PIL, numpy and tensors at 8 and 16 bits
(:mod:`.adapters`); and the ``img2img predict`` command (:mod:`.predict`). It names no
task.

    import img2img
    t = img2img.load("runs/facades")             # run dir, model dir, checkpoint dir
    t = img2img.load("hf://owner/name@v1")       # a Hub model: explicit, revision optional
    out = t(Image.open("photo.jpg"))              # PIL in -> PIL out
    outs = t([a, b, c], tile=512, batch_size=4)  # the overlap the network needs
    t = img2img.load("RealESRGAN_x4plus.pth")   # third-party SR weights (spandrel)
"""

from img2img.inference.loading import find_model, resolve_device
from img2img.inference.tiling import blend_weights, plan_tiles, tile_starts
from img2img.inference.translator import Translator, load

__all__ = ["Translator", "blend_weights", "find_model", "load", "plan_tiles", "resolve_device", "tile_starts"]
