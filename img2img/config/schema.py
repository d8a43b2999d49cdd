"""The schema of a run: the section dataclasses, their metadata, and the names they allow.

Each field carries its type, its default and, in ``metadata``, the rules a value must
keep: ``choices`` (the allowed values), ``min``/``max`` (inclusive bounds), ``below``
(an exclusive upper bound) and ``note`` (said beside the bounds in a message). A ``#:``
comment above a field is its description in the JSON schema (editors show it on hover).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

#: Every metric evaluation reports, in display order, and whether higher is better. The
#: best model and the plateau schedule follow ``eval.metric``'s direction.
METRICS = {"psnr": True, "ssim": True, "psnr_y": True, "ssim_y": True, "fid": False, "kid": False,
           "is": True, "lpips": False, "l1": False, "psnr_hole": True, "ssim_hole": True, "l1_hole": False}
GENERATORS = (
    "unet_128",
    "unet_256",
    "unet",
    "resnet_6blocks",
    "resnet_9blocks",
    "resnet",
    "resnet_9blocks_aa",
    "resnet_aa",
    "srresnet",
    "srresnet_bn",
    "rrdbnet",
    "srvgg_compact",
    "span",
    "stargan_resnet",
)
DISCRIMINATORS = ("patchgan", "patchgan_aa", "pixelgan", "multiscale", "vgg", "unet_sn", "vgg128",
                  "stargan_patchgan", "none")
NORMS = ("batch", "instance", "none", "spectral")
INITS = ("normal", "xavier", "kaiming", "orthogonal")
GAN_MODES = ("vanilla", "lsgan", "wgangp", "hinge", "ragan")
PIXEL_LOSSES = ("l1", "mse", "charbonnier")
SCHEDULERS = ("constant", "linear", "step", "cosine", "plateau")
PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")

# Upper bounds of sizes a config may ask for: far above any real use, they stop a typo or
# a hostile file (ngf: 1000000000) from allocating without bound before any check runs.
#: Channel widths (model.generator.ngf, model.discriminator.ndf): 8 x the usual 64.
MAX_WIDTH = 512
#: Image sides of training crops and resizes (data.load_size, crop_size, gt_size): one
#: 8192 x 8192 sample is already 0.8 GB as float.
MAX_SIDE = 8192
#: The largest config file read; recipes are a few kilobytes.
MAX_CONFIG_BYTES = 1 << 20
#: How deeply YAML mappings and lists may nest; the schema is 3 levels deep.
MAX_YAML_DEPTH = 32


def _choices(*values: str, **extra: Any) -> Any:
    return {"choices": values, **extra}


@dataclass
class GeneratorConfig:
    """The generator backbone. Names fix the depth: ``unet_256`` has 8 downsamplings,
    ``resnet_9blocks`` 9 residual blocks; the plain ``unet``/``resnet`` names read
    ``num_downs``/``n_blocks``."""

    #: The backbone; unet/resnet read num_downs/n_blocks.
    name: str = field(default="unet_256", metadata=_choices(*GENERATORS))
    #: Base width (channels of the first layer).
    ngf: int = field(default=64, metadata={"min": 1, "max": MAX_WIDTH})
    #: Normalisation layers.
    norm: str = field(default="batch", metadata=_choices(*NORMS))
    #: Dropout 0.5 in the U-Net's innermost blocks / the ResNet blocks.
    dropout: bool = True
    #: Depth of the plain unet (downsamplings).
    num_downs: int = field(default=8, metadata={"min": 1, "max": 12})
    #: Residual blocks of resnet (unset: 9) and the SRResNets (unset: 16); RRDBs of
    #: rrdbnet (unset: 23); body convs of srvgg_compact (unset: 16).
    n_blocks: int | None = field(default=None, metadata={"min": 0, "max": 256})
    #: ResNet padding.
    padding: str = field(default="reflect", metadata=_choices("reflect", "replicate", "zero"))
    #: Weight initialisation.
    init: str = field(default="normal", metadata=_choices(*INITS))
    #: Scale of the initial weights.
    init_gain: float = field(default=0.02, metadata={"min": 0.0})
    #: SRResNets only: unit runs the layers on [0, 1] images (BasicSR weights); images
    #: stay [-1, 1] outside.
    value_range: str = field(default="signed", metadata=_choices("signed", "unit"))
    #: resnet_aa only: blur-pool (anti-aliased) down- and upsampling, as CUT; false:
    #: strided and transposed convolutions.
    antialias: bool = True
    #: rrdbnet only: the channels each dense layer adds (ESRGAN's num_grow_ch; unset: 32).
    growth: int | None = field(default=None, metadata={"min": 1, "max": MAX_WIDTH})


@dataclass
class DiscriminatorConfig:
    """The discriminator: the 70x70 PatchGAN is ``patchgan`` with ``n_layers: 3``."""

    #: The discriminator; none trains the generator alone.
    name: str = field(default="patchgan", metadata=_choices(*DISCRIMINATORS))
    #: Base width (channels of the first layer).
    ndf: int = field(default=64, metadata={"min": 1, "max": MAX_WIDTH})
    #: Strided layers of the PatchGAN (3: the 70x70 PatchGAN).
    n_layers: int = field(default=3, metadata={"min": 0, "max": 16})
    #: Normalisation layers.
    norm: str = field(default="batch", metadata=_choices(*NORMS))
    #: Scales of the multiscale discriminator.
    num_scales: int = field(default=2, metadata={"min": 1, "max": 8})
    #: Weight initialisation.
    init: str = field(default="normal", metadata=_choices(*INITS))
    #: Scale of the initial weights.
    init_gain: float = field(default=0.02, metadata={"min": 0.0})


@dataclass
class ModelConfig:
    """Networks. ``in_channels``/``out_channels`` left empty take the task's natural values
    (3 -> 3; colorization 1 -> 2)."""

    #: Generator input channels (unset: the task's).
    in_channels: int | None = field(default=None, metadata={"min": 1, "max": 64})
    #: Generator output channels (unset: the task's).
    out_channels: int | None = field(default=None, metadata={"min": 1, "max": 64})
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    #: Initialise the generator(s) from a run or model directory (SRGAN stage 2).
    init_from: str | None = None


@dataclass
class LossConfig:
    """Objective weights. Terms a task does not use are ignored by it."""

    #: The GAN objective.
    gan_mode: str = field(default="vanilla", metadata=_choices(*GAN_MODES))
    #: Weight of the generator's adversarial term.
    gan_weight: float = field(default=1.0, metadata={"min": 0.0})
    #: The pixel loss.
    pixel: str = field(default="l1", metadata=_choices(*PIXEL_LOSSES))
    #: Weight of the pixel loss.
    pixel_weight: float = field(default=100.0, metadata={"min": 0.0})
    #: Weight of the cycle-consistency loss (CycleGAN).
    cycle_weight: float = field(default=10.0, metadata={"min": 0.0})
    #: Weight of the identity loss, relative to the cycle weight (CycleGAN).
    identity_weight: float = field(default=0.5, metadata={"min": 0.0})
    #: Weight of the VGG19 perceptual loss (0: off).
    perceptual_weight: float = field(default=0.0, metadata={"min": 0.0})
    #: VGG19 layers of the perceptual loss and their weights.
    perceptual_layers: dict[str, float] = field(default_factory=lambda: {"conv5_4": 1.0})
    #: VGG19 weights: imagenet, none, or a local file.
    vgg_weights: str = "imagenet"
    #: Weight of the gradient penalty (wgangp).
    gp_weight: float = field(default=10.0, metadata={"min": 0.0})
    #: Weight of the R1 penalty on real images (0: off).
    r1_weight: float = field(default=0.0, metadata={"min": 0.0})
    #: Weight of pix2pixHD's discriminator feature matching (0: off; pix2pixHD: 10).
    feature_matching_weight: float = field(default=0.0, metadata={"min": 0.0})
    #: Scale of the discriminator loss (0.5 halves it, as in pix2pix/CycleGAN).
    d_loss_scale: float = field(default=0.5, metadata={"min": 0.0})
    #: Size of the image pool per discriminator (CycleGAN; 0: no pool).
    pool_size: int = field(default=50, metadata={"min": 0, "max": 1000})


@dataclass
class TrainConfig:
    """Optimisation and the engine's switches."""

    #: Training steps.
    max_steps: int = field(default=1000, metadata={"min": 1})
    #: Images per step and process.
    batch_size: int = field(default=1, metadata={"min": 1, "max": 4096})
    #: Checkpoint period in steps.
    save_every: int = field(default=1000, metadata={"min": 1})
    #: Checkpoints kept (plus the best).
    keep_last: int = field(default=3, metadata={"min": 1})
    #: Gradient accumulation steps.
    grad_accum: int = field(default=1, metadata={"min": 1})
    #: Discriminator updates per generator update (WGAN-GP's n_critic; StarGAN: 5). One
    #: step is this many D updates, each on its own batch (x grad_accum), and one G update
    #: with the last, in the task's order; max_steps, schedules, save_every, eval.every and
    #: log.every count these steps (G updates).
    d_steps_per_g_step: int = field(default=1, metadata={"min": 1, "max": 100})
    #: Adam learning rate of the generator(s).
    lr_g: float = field(default=2e-4, metadata={"min": 0.0})
    #: Adam learning rate of the discriminator(s).
    lr_d: float = field(default=2e-4, metadata={"min": 0.0})
    #: Adam betas: two numbers in [0, 1).
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    #: Adam weight decay.
    weight_decay: float = field(default=0.0, metadata={"min": 0.0})
    #: The learning-rate schedule.
    scheduler: str = field(default="linear", metadata=_choices(*SCHEDULERS))
    #: linear: the step where the decay to 0 begins (unset: half of max_steps).
    decay_start: int | None = field(default=None, metadata={"min": 0})
    #: step: the steps where the learning rate is multiplied by gamma (increasing).
    milestones: list[int] = field(default_factory=list)
    #: step: the factor at each milestone.
    gamma: float = field(default=0.5, metadata={"min": 0.0})
    #: cosine: the lengths of the periods in steps (empty: one period of max_steps).
    cosine_periods: list[int] = field(default_factory=list)
    #: cosine: the learning-rate weight of each period (empty: all 1).
    restart_weights: list[float] = field(default_factory=list)
    #: cosine: the lowest learning rate.
    eta_min: float = field(default=0.0, metadata={"min": 0.0})
    #: plateau: evaluations without improvement before the learning rate drops.
    plateau_patience: int = field(default=5, metadata={"min": 0})
    #: plateau: the factor the learning rate is multiplied by (< 1).
    plateau_factor: float = field(default=0.5, metadata={"min": 0.0, "below": 1.0})
    #: Linear learning-rate warm-up steps on top of any schedule (not plateau).
    warmup_steps: int = field(default=0, metadata={"min": 0})
    #: Gradient clipping norm (0: off).
    max_grad_norm: float = field(default=0.0, metadata={"min": 0.0})
    #: EMA decay of the generator(s) (0: off); evaluation and export use the average.
    ema: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})
    #: Channels-last memory format (GPUs).
    channels_last: bool = False
    #: torch.compile the networks.
    compile: bool = False
    #: The fused Adam implementation where available.
    fused_adam: bool = True
    #: TF32 matrix products on GPUs that have them.
    tf32: bool = True
    #: Skip (and count) steps whose loss is NaN/inf instead of stopping.
    skip_nonfinite: bool = False


@dataclass
class DataConfig:
    """Where the images are and how they are read. Split folders live under ``root``
    (``root/train``, ``root/val``; ``root/trainA``, ``root/trainB`` for unpaired data)."""

    #: The data folder (required to train).
    root: str = ""
    #: The training split's folder name.
    train_split: str = "train"
    #: The validation split's folder name.
    val_split: str = "val"
    #: Paired data: one A|B image (aligned) or A/ and B/ folders matched by name.
    layout: str = field(default="aligned", metadata=_choices("aligned", "folders"))
    #: Aligned layout: a folder where most images are narrower than this many times their
    #: height is refused as single photos (A|B halves with portrait sides: lower it; 0: off).
    min_pair_ratio: float = field(default=1.4, metadata={"min": 0.0, "max": 2.0})
    #: Which side of a pair is the input.
    direction: str = field(default="AtoB", metadata=_choices("AtoB", "BtoA"))
    #: Unreadable images: raise stops before training and lists them; skip drops them.
    on_error: str = field(default="raise", metadata=_choices("raise", "skip"))
    #: How training images are resized and cropped (as the pix2pix/CycleGAN reference).
    preprocess: str = field(default="resize_and_crop", metadata=_choices(*PREPROCESS))
    #: The side images are resized to before cropping.
    load_size: int = field(default=286, metadata={"min": 1, "max": MAX_SIDE})
    #: The side of the training crops.
    crop_size: int = field(default=256, metadata={"min": 1, "max": MAX_SIDE})
    #: Random horizontal flips.
    flip: bool = True
    #: Super-resolution: random 90-degree rotations.
    rot90: bool = False
    #: Super-resolution: the upscaling factor.
    scale: int = field(default=4, metadata={"choices": (1, 2, 3, 4)})
    #: Super-resolution: the side of the high-resolution training crops.
    gt_size: int = field(default=128, metadata={"min": 1, "max": MAX_SIDE})
    #: Super-resolution: a folder of matching low-resolution inputs (unset: made on the fly).
    lr_root: str | None = None
    #: Images above this many pixels are refused (decompression bombs).
    max_pixels: int = field(default=178_956_970, metadata={"min": 1})
    #: Transparent images: composite on white, or drop the alpha channel.
    alpha: str = field(default="white", metadata=_choices("white", "drop"))
    #: DataLoader workers.
    num_workers: int = field(default=2, metadata={"min": 0, "max": 128})
    #: Evaluate on N validation images (0: all): the first N; multi-domain data takes them
    #: in turn from each domain (the first of every domain, then the second, ...).
    max_val_images: int = field(default=0, metadata={"min": 0})


@dataclass
class EvalConfig:
    """Periodic evaluation on the validation split and the best checkpoint it picks."""

    #: Evaluation period in steps (0: only at the end).
    every: int = field(default=0, metadata={"min": 0})
    #: The metric that picks the best model.
    metric: str = field(default="psnr", metadata=_choices(*METRICS))
    #: Pixels cut from each edge before PSNR/SSIM (unset: the task's, the scale for SR).
    crop_border: int | None = field(default=None, metadata={"min": 0})
    #: A local FID Inception weights file, for fid/kid/is (the Inception Score).
    fid_weights: str | None = None
    #: LPIPS v0.1 of paired predictions with this backbone (off: not computed).
    lpips: str = field(default="off", metadata=_choices("off", "alex", "vgg"))
    #: The LPIPS v0.1 linear-layer file of that backbone (alex.pth or vgg.pth).
    lpips_weights: str | None = None
    #: The LPIPS backbone: imagenet (torchvision's file, from torch.hub's cache) or a file.
    lpips_backbone: str = "imagenet"


@dataclass
class LogConfig:
    """Trackers and how often they hear from the run."""

    #: Weights & Biases.
    wandb: str = field(default="off", metadata=_choices("off", "offline", "online"))
    #: The W&B project.
    project: str = "img2img"
    #: The W&B run name (unset: the run folder's name).
    run_name: str | None = None
    #: Also log to TensorBoard.
    tensorboard: bool = False
    #: Scalar logging period in steps.
    every: int = field(default=50, metadata={"min": 1})
    #: Sample-grid period in steps (0: off).
    images_every: int = field(default=500, metadata={"min": 0})
    #: Show the progress bar.
    progress: bool = True
    #: Collapse guard (unpaired tasks): warn once when the generated images vary less than
    #: this fraction of their inputs' spread (logged as collapse/*; 0: off).
    collapse_threshold: float = field(default=0.05, metadata={"min": 0.0})
    #: Collapse guard: the first step it may warn at (unset: max_steps / 4, at most 1000).
    collapse_warmup: int | None = field(default=None, metadata={"min": 0})


@dataclass
class Config:
    """One training run."""

    #: The method.
    task: str = ""
    #: The method's own settings, checked by its Options.
    task_options: dict[str, Any] = field(default_factory=dict)
    #: The run directory (config, checkpoints, model, samples, metrics).
    output_dir: str = "runs/run"
    #: Seeds Python, NumPy, torch and the data order.
    seed: int = field(
        default=0, metadata={"min": 0, "max": 2**64 - 1, "note": "2**64 - 1, the largest seed torch takes"}
    )
    #: Where the run trains.
    device: str = field(default="auto", metadata=_choices("auto", "cpu", "cuda"))
    #: Mixed precision.
    mixed_precision: str = field(default="no", metadata=_choices("no", "fp16", "bf16"))
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)

    # ---------------------------------------------------------------- conveniences
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def type_hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a dataclass's fields."""
    return typing.get_type_hints(cls)


def all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the schema, e.g. ``train.batch_size``."""
    keys = []
    hints = type_hints(cls)
    for f in dataclasses.fields(cls):
        dotted = f"{prefix}{f.name}"
        ftype = hints[f.name]
        if dataclasses.is_dataclass(ftype):
            keys.extend(all_keys(ftype, dotted + "."))
        else:
            keys.append(dotted)
    return keys
