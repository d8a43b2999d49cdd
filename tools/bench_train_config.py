"""The benchmark's training cases: the networks and losses of each task, the modes, the
generated training images and the config a case runs with. See ``tools/bench_train.py``.

Nothing here imports torch; ``build_config`` and ``make_data`` import what they need.
"""

from __future__ import annotations

import math
from pathlib import Path

#: The classic reference implementation's CPU float32 step on these machines, in seconds,
#: at (task, batch, size). Source: /work/shared/DESIGN.md, "Facts of the machines".
REFERENCE_STEP_S = {("pix2pix", 1, 256): 0.83, ("cyclegan", 1, 256): 11.4}

#: The CUT cases, compared with CycleGAN's, and every case trained on unpaired data.
CUT_CASES = ("cut", "fastcut", "cut_strided")
UNPAIRED = ("cyclegan", *CUT_CASES)

TASKS = {
    "pix2pix": {
        "overrides": [
            "task=pix2pix", "model.generator.name=unet_256", "model.generator.norm=batch",
            "model.generator.dropout=true", "model.discriminator.name=patchgan",
            "model.discriminator.n_layers=3", "model.discriminator.norm=batch",
            "loss.gan_mode=vanilla", "loss.pixel_weight=100", "loss.d_loss_scale=0.5",
        ],
        "batches": (1, 16), "size": 256, "quick_batch": 1,
    },
    "cyclegan": {
        "overrides": [
            "task=cyclegan", "model.generator.name=resnet_9blocks", "model.generator.norm=instance",
            "model.generator.dropout=false", "model.discriminator.name=patchgan",
            "model.discriminator.n_layers=3", "model.discriminator.norm=instance",
            "loss.gan_mode=lsgan", "loss.cycle_weight=10", "loss.identity_weight=0.5",
            "loss.pool_size=50", "loss.d_loss_scale=0.5", "eval.metric=fid",
        ],
        "batches": (1, 8), "size": 256, "quick_batch": 1,
    },
    # CUT and FastCUT as configs/cut/horse2zebra*.yaml: anti-aliased ResNet-9 + anti-aliased
    # PatchGAN, LSGAN, PatchNCE on 5 layers x 256 patches, no image pool; cut_strided is CUT
    # with the switch to strided convolutions (generator and PatchGAN). Side by side with
    # CycleGAN at the same size (the vs_cyclegan_* columns).
    **{case: {
        "overrides": [
            "task=cut", f"task_options.mode={case.split('_')[0]}", "model.generator.name=resnet_9blocks_aa",
            "model.generator.norm=instance", "model.generator.dropout=false", "model.generator.init=xavier",
            f"model.generator.antialias={'false' if case.endswith('strided') else 'true'}",
            f"model.discriminator.name={'patchgan' if case.endswith('strided') else 'patchgan_aa'}",
            "model.discriminator.n_layers=3", "model.discriminator.norm=instance",
            "model.discriminator.init=xavier", "loss.gan_mode=lsgan", "loss.d_loss_scale=0.5",
            "loss.pool_size=0", "eval.metric=fid",
        ],
        "batches": (1,), "size": 256, "quick_batch": 1,
    } for case in CUT_CASES},
    "srgan": {
        "overrides": [
            "task=srgan", "model.generator.name=srresnet", "data.scale=4",
            "model.discriminator.name=patchgan", "model.discriminator.n_layers=3",
            "model.discriminator.norm=batch", "loss.pixel=l1", "loss.pixel_weight=0.01",
            "loss.perceptual_weight=1", "loss.vgg_weights=none", "loss.gan_mode=vanilla",
            "loss.gan_weight=0.005", "loss.d_loss_scale=1", "train.betas=[0.9,0.99]",
            "eval.metric=psnr_y",
        ],
        "batches": (16,), "size": 128, "quick_batch": 2,
    },
    # Real-ESRGAN x4plus, GAN stage: RRDBNet + U-Net discriminator (spectral norm) + VGG19
    # pre-activation perceptual loss; its LR is made on the device by the second-order
    # degradation inside the step (the task's prepare), from 400 px crops for 256 px ones.
    "realesrgan": {
        "overrides": [
            "task=realesrgan", "model.generator.name=rrdbnet", "data.scale=4",
            "model.discriminator.name=unet_sn", "loss.pixel=l1", "loss.pixel_weight=1",
            "loss.perceptual_weight=1", "loss.vgg_weights=none", "loss.gan_mode=vanilla",
            "loss.perceptual_layers={conv1_2: 0.1, conv2_2: 0.1, conv3_4: 1, conv4_4: 1, conv5_4: 1}",
            "loss.gan_weight=0.1", "loss.d_loss_scale=1", "train.betas=[0.9,0.99]", "eval.metric=psnr",
        ],
        "batches": (12,), "size": 256, "quick_batch": 2,
    },
    # The compact network of realesr-general-x4v3 (64 features, 32 convs), L1 only (the
    # Real-ESRNet stage) on the same degradation: the step where the degradation weighs most.
    "realesrnet_compact": {
        "overrides": [
            "task=realesrgan", "model.generator.name=srvgg_compact", "model.generator.ngf=64",
            "model.generator.n_blocks=32", "data.scale=4", "model.discriminator.name=none",
            "loss.pixel=l1", "loss.pixel_weight=1", "loss.gan_weight=0", "train.betas=[0.9,0.99]",
            "eval.metric=psnr",
        ],
        "batches": (12,), "size": 256, "quick_batch": 2,
    },
    "colorization": {
        "overrides": [
            "task=colorization", "model.generator.name=unet_256", "model.generator.norm=batch",
            "model.generator.dropout=true", "model.discriminator.name=patchgan",
            "model.discriminator.n_layers=3", "model.discriminator.norm=batch",
            "loss.gan_mode=vanilla", "loss.pixel_weight=100",
        ],
        "batches": (1, 16), "size": 256, "quick_batch": 1,
    },
}

MODES = {
    "fp32": ["mixed_precision=no", "train.channels_last=false", "train.fused_adam=false",
             "train.tf32=false", "train.compile=false"],
    "fp32+fused": ["mixed_precision=no", "train.channels_last=false", "train.fused_adam=true",
                   "train.tf32=false", "train.compile=false"],
    "bf16": ["mixed_precision=bf16", "train.channels_last=false", "train.fused_adam=false",
             "train.tf32=false", "train.compile=false"],
    # channels_last is added on CUDA only (see mode_overrides)
    "fast": ["mixed_precision=bf16", "train.fused_adam=true", "train.tf32=true", "train.compile=false"],
    "fast+cl": ["mixed_precision=bf16", "train.channels_last=true", "train.fused_adam=true",
                "train.tf32=true", "train.compile=false"],
    "fast+compile": ["mixed_precision=bf16", "train.fused_adam=true", "train.tf32=true",
                     "train.compile=true"],
}
MODES["classic"] = MODES["fp32"]  # the same settings; the step is bench_train_classic.classic_step


# --------------------------------------------------------------------------- a case


def _smooth_image(rng, h: int, w: int):
    """A smooth random colour image (uint8 HxWx3)."""
    import numpy as np

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    for c in range(3):
        a, b, phase = rng.uniform(-0.2, 0.2, 3)
        img[..., c] = 0.5 + 0.4 * np.sin(a * yy + b * xx + 10 * phase)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def make_data(root: Path, task: str, size: int, count: int = 2) -> Path:
    """``count`` generated training images of ``size`` px in the layout ``task`` reads."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        img = _smooth_image(rng, size, size)
        if task == "pix2pix":
            files = {f"train/{i}.png": np.concatenate([255 - img, img], axis=1)}
        elif task in UNPAIRED:
            files = {f"trainA/{i}.png": img, f"trainB/{i}.png": np.ascontiguousarray(img[..., ::-1])}
        else:
            files = {f"train/{i}.png": img}
        for name, array in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(path)
    return root


def network_overrides(task: str, size: int) -> tuple[list[str], str]:
    """Overrides that fit the task's generator to ``size`` px, and the generator's label."""
    if task in ("pix2pix", "colorization"):
        if size >= 256:
            return [], "unet_256"
        downs = max(1, min(8, int(math.log2(size))))
        return ["model.generator.name=unet", f"model.generator.num_downs={downs}"], f"unet({downs} downs)"
    if task == "cyclegan":
        return [], "resnet_9blocks"
    if task in UNPAIRED:
        return [], "resnet_9blocks_aa" + (" (strided)" if task.endswith("strided") else "")
    if task.startswith("realesr"):
        pad = 4 * round(size * 400 / 256 / 4)  # Real-ESRGAN degrades 400 px crops for 256 px ones
        label = "srvgg_compact_x4" if task.endswith("compact") else "rrdbnet_x4+unet_sn"
        return [f"data.gt_size={size}", f"task_options.crop_pad_size={pad}"], label
    return [f"data.gt_size={size}"], "srresnet_x4"


def mode_overrides(mode: str, device: str) -> list[str]:
    """The config overrides of a mode: ``fast`` and ``fast+compile`` use channels_last on
    CUDA only (on the CPU it measured slower, see ``tools/bench_train.py``)."""
    overrides = list(MODES[mode])
    if mode in ("fast", "fast+compile"):
        overrides.append(f"train.channels_last={'true' if device == 'cuda' else 'false'}")
    return overrides


def build_config(task: str, batch: int, size: int, mode: str, device: str, root: Path,
                 output_dir: Path, *extra: str):
    """The run config of one case: data in ``root``, the run in ``output_dir``, no
    evaluation, logging or EMA; ``extra`` overrides come last."""
    from img2img.config import load_config

    net, _ = network_overrides(task, size)
    overrides = [
        *TASKS[task]["overrides"], *net, *mode_overrides(mode, device),
        f"device={device}", f"data.root={root}", f"output_dir={output_dir}",
        f"train.batch_size={batch}", "train.max_steps=1000000", "train.ema=0",
        "data.num_workers=0", "data.preprocess=crop", f"data.load_size={size}",
        f"data.crop_size={size}", "data.flip=false", "log.wandb=off", "log.progress=false",
        "log.images_every=0", "eval.every=0", "seed=0", *extra,
    ]
    return load_config(None, overrides)
