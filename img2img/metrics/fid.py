"""FID and KID: the standard feature network's weights, and the streaming metrics.

:func:`load_fid_inception` builds :class:`~img2img.metrics.inception.FIDInceptionV3` from a
local weights file, ``.pth`` (read by the project's safe reader, ``weights_only=True``) or
``.safetensors``; a file with the pytorch-fid name must have the SHA-256 its name begins.
Key names are those of the pytorch-fid file and map one to one onto the module's
parameter and buffer names::

    Conv2d_1a_3x3.conv.weight                       stem convolution (no bias)
    Conv2d_1a_3x3.bn.{weight,bias,running_mean,running_var}   its batch norm (eps 1e-3)
    ... likewise Conv2d_2a_3x3, Conv2d_2b_3x3, Conv2d_3b_1x1, Conv2d_4a_3x3
    Mixed_5b.branch1x1.conv.weight, Mixed_5b.branch5x5_1.bn.running_var, ...
    ... Mixed_5b/5c/5d, Mixed_6a..6e, Mixed_7a/7b/7c, each branch a conv + bn pair
    fc.weight (1008 x 2048), fc.bias (1008)

``*.num_batches_tracked`` entries are optional (older files lack them; they are unused in
eval mode). Any other missing or unexpected key, or a shape that differs, is a
:class:`~img2img.errors.UserError` naming the file.

:class:`FidKid` (and :func:`fid_kid` for two whole sets) feeds the features of a pluggable
network (it must expose ``num_features``) to torchmetrics' ``FrechetInceptionDistance``
and ``KernelInceptionDistance``, and, for a network with ``class_logits`` (the FID
Inception-v3), the generated images' class logits to the Inception Score.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from img2img.errors import UserError
from img2img.metrics.inception import FIDInceptionV3
from img2img.metrics.sync import pack_list_states

__all__ = [
    "FID_WEIGHTS_NAME",
    "FID_WEIGHTS_URL",
    "FIDInceptionV3",
    "FidKid",
    "fid_kid",
    "load_fid_inception",
]

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_NAME
)
PEAK = 255.0  # uint8 levels, to which images are rounded before their features


# --------------------------------------------------------------------------- the weights


def _missing_weights_message() -> str:
    return (
        f"FID and KID need the FID Inception weights ({FID_WEIGHTS_NAME}, about 92 MB), and "
        f"no weights file was given. Download it from {FID_WEIGHTS_URL} and pass its path "
        "with eval.fid_weights=PATH in the config (or on the command line), or with "
        "--fid-weights PATH on `img2img eval`."
    )


def _hub_copy() -> Path | None:
    """The copy pytorch-fid or torch.hub may already have cached, if any."""
    try:
        path = Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_NAME
    except Exception:  # noqa: BLE001 - no usable hub directory means no cached copy
        return None
    return path if path.is_file() else None


def _read_state_dict(path: Path) -> dict:
    from img2img.files import read_weights_file

    try:
        state = read_weights_file(path)
    except ValueError as err:
        raise UserError(
            f"cannot read FID weights {path}: {err}; expected {FID_WEIGHTS_NAME} from {FID_WEIGHTS_URL}"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UserError(f"FID weights {path} do not hold a state dict of tensors")
    return state


def _list(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def _weights_path(weights: str | Path | None) -> Path:
    """The file to read: ``weights``, or for ``None`` the copy in torch.hub's cache."""
    if weights is None:
        weights = _hub_copy()
        if weights is None:
            raise UserError(_missing_weights_message())
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UserError(
            f"FID weights file {path} does not exist; FID and KID need the FID Inception "
            f"weights ({FID_WEIGHTS_NAME}, about 92 MB) from {FID_WEIGHTS_URL}"
        )
    return path


def _check_keys(path: Path, state: dict, expected: dict) -> None:
    """Every tensor of ``expected`` (but ``num_batches_tracked``) in ``state`` with its
    shape, and nothing else: otherwise a UserError naming the file."""
    missing = [k for k in expected if not k.endswith("num_batches_tracked") and k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_list(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_list(unexpected)}")
        raise UserError(
            f"FID weights {path} do not match the FID Inception-v3 ({'; '.join(parts)}); "
            f"expected the pytorch-fid file {FID_WEIGHTS_NAME} from {FID_WEIGHTS_URL}"
        )
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if wrong:
        raise UserError(f"FID weights {path} have tensors of the wrong shape: {_list(wrong, 3)}")


def load_fid_inception(
    weights: str | Path | None = None, device: str | torch.device | None = None
) -> FIDInceptionV3:
    """The FID Inception-v3 with weights from a local ``.pth`` or ``.safetensors`` file.

    ``weights=None`` uses the copy in torch.hub's checkpoint directory if pytorch-fid or
    torchmetrics left one there, and otherwise raises a UserError that says where to get the
    file and how to pass it. A file named ``pt_inception-2015-12-05-6726825d.pth`` (a copy in
    that cache or a path given) must have that hash: its SHA-256 starts with ``6726825d``,
    torch.hub's convention; it is checked before the file is read.
    """
    from img2img.pretrained import check_named_hash

    path = _weights_path(weights)
    fix = (f"{'Delete it, or download' if weights is None else 'Download'} {FID_WEIGHTS_NAME} "
           f"again from {FID_WEIGHTS_URL} and pass it with eval.fid_weights=PATH or --fid-weights PATH")
    check_named_hash(path, FID_WEIGHTS_NAME, f"the FID Inception weights {FID_WEIGHTS_NAME}", fix)
    state = _read_state_dict(path)
    with torch.device("meta"):  # no random init: every tensor comes from the file
        net = FIDInceptionV3()
    expected = net.state_dict()
    _check_keys(path, state, expected)
    full = {
        k: state[k].to(v.dtype) if k in state else torch.zeros((), dtype=v.dtype)
        for k, v in expected.items()
    }
    net.load_state_dict(full, assign=True)
    net.requires_grad_(False)
    return net.to(device) if device is not None else net


# --------------------------------------------------------------------------- FID / KID


class _Features(nn.Module):
    """Identity "feature network" handed to torchmetrics: the features are computed once by
    :class:`FidKid` and fed to both FID and KID."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


def _feature_count(net: nn.Module) -> int:
    count = getattr(net, "num_features", None)
    if isinstance(count, Tensor):
        count = int(count.item())
    if not isinstance(count, int) or count < 1:
        raise ValueError(
            f"the feature network {type(net).__name__} must expose num_features (an int), "
            f"got {count!r}"
        )
    return count


class FidKid:
    """Streaming FID and KID between real and generated images.

    Images are float ``Nx3xHxW`` tensors in [0, 1]; by default they are first rounded to
    uint8 levels (``quantize=True``), so tensors score the same as their saved PNGs. The
    feature network (it must expose ``num_features``; the standard one is
    :func:`load_fid_inception`) runs once per batch in eval mode without
    gradients, on its own device. Its features feed torchmetrics'
    ``FrechetInceptionDistance`` (running float64 sums) and ``KernelInceptionDistance``
    (stored features, polynomial kernel, ``kid_subsets`` random subsets of
    ``kid_subset_size``; fewer samples than that use all of them). ``seed`` makes the KID
    subsets reproducible. Under an initialised ``torch.distributed`` group torchmetrics
    gathers the statistics of every process in ``compute``.

    When the feature network has ``class_logits`` (the FID Inception-v3 does) and
    ``inception_score`` is true, the generated images' class logits also feed the
    Inception Score (:mod:`img2img.metrics.inception_score`, ``is_splits`` groups in the
    order given by ``update(..., order=)``, else in arrival order).
    """

    def __init__(
        self,
        feature_net: nn.Module,
        kid_subset_size: int = 1000,
        kid_subsets: int = 100,
        fid: bool = True,
        kid: bool = True,
        quantize: bool = True,
        seed: int = 0,
        inception_score: bool = True,
        is_splits: int = 10,
    ):
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        if not (fid or kid):
            raise ValueError("FidKid needs fid=True or kid=True")
        self.feature_net = feature_net
        self.num_features = _feature_count(feature_net)
        self.kid_subset_size = kid_subset_size
        self.quantize = quantize
        self.seed = seed
        identity = _Features(self.num_features)
        self._fid = FrechetInceptionDistance(feature=identity, normalize=True) if fid else None
        self._kid = None
        if kid:
            with warnings.catch_warnings():  # "will save all extracted features in buffer"
                warnings.simplefilter("ignore", UserWarning)
                self._kid = KernelInceptionDistance(
                    feature=_Features(self.num_features),
                    subsets=kid_subsets,
                    subset_size=kid_subset_size,
                    normalize=True,
                )
        self._is = None
        if inception_score and callable(getattr(feature_net, "class_logits", None)):
            from img2img.metrics.inception_score import InceptionScore

            self._is = InceptionScore(is_splits)
        self.counts = {"real": 0, "fake": 0}

    def _metrics(self):
        return [m for m in (self._fid, self._kid) if m is not None]

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """Features (float64, ``N x num_features``) of float ``Nx3xHxW`` images in [0, 1]."""
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"FID/KID expect float Nx3xHxW tensors in [0, 1], got {shape}")
        if not images.is_floating_point():
            raise TypeError(f"FID/KID expect float images in [0, 1], got {images.dtype}")
        param = next(self.feature_net.parameters(), None)
        if param is not None:
            images = images.to(device=param.device, dtype=param.dtype)
        if self.quantize:
            images = (images * PEAK).round().clamp(0, PEAK) / PEAK
        self.feature_net.eval()
        features = self.feature_net(images)
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise ValueError(
                f"the feature network returned shape {tuple(features.shape)}, expected "
                f"(N, {self.num_features})"
            )
        return features.double()

    def update(self, real: Tensor | None = None, fake: Tensor | None = None, order: Tensor | None = None) -> None:
        """Add a batch of real images, of generated images, or of both; ``order`` (int, one
        per generated image) places the generated images in the evaluation order for the
        Inception Score's splits (default: after those seen so far by this object)."""
        for images, is_real in ((real, True), (fake, False)):
            if images is None:
                continue
            features = self.features(images)
            for metric in self._metrics():
                metric.to(features.device)
                metric.update(features, real=is_real)
            if not is_real and self._is is not None:
                if order is None:
                    order = torch.arange(features.shape[0]) + self.counts["fake"]
                self._is.to(features.device)
                self._is.update(self.feature_net.class_logits(features), torch.as_tensor(order).reshape(-1))
            self.counts["real" if is_real else "fake"] += features.shape[0]

    def update_real_features(self, features: Tensor) -> None:
        """Add real images by their :meth:`features` (computed once and shared by several
        metrics on the same feature network); the same as ``update(real=images)``."""
        self._add_features(features, real=True)

    def update_fake_features(self, features: Tensor, order: Tensor | None = None) -> None:
        """Add generated images by their :meth:`features`: the same as
        ``update(fake=images, order=order)``."""
        if self._is is not None:
            if order is None:
                order = torch.arange(features.shape[0]) + self.counts["fake"]
            self._is.to(features.device)
            self._is.update(self.feature_net.class_logits(features), torch.as_tensor(order).reshape(-1))
        self._add_features(features, real=False)

    def _add_features(self, features: Tensor, real: bool) -> None:
        for metric in self._metrics():
            metric.to(features.device)
            metric.update(features, real=real)
        self.counts["real" if real else "fake"] += features.shape[0]

    def _total_counts(self) -> dict:
        """Images seen by every process together (torchmetrics syncs the states, if distributed)."""
        if self._fid is not None:
            with self._fid.sync_context():
                return {
                    "real": int(self._fid.real_features_num_samples),
                    "fake": int(self._fid.fake_features_num_samples),
                }
        with self._kid.sync_context():
            return {
                "real": sum(int(f.shape[0]) for f in self._kid.real_features),
                "fake": sum(int(f.shape[0]) for f in self._kid.fake_features),
            }

    def compute(self) -> dict:
        """``{"fid", "kid", "kid_std", "kid_subset_size", "is", "is_std", "real", "fake"}``
        (only what was enabled), over the images of every process."""
        pack_list_states(self.feature_net, self.num_features, self._kid, self._is, self._fid)
        counts = self._total_counts()
        if min(counts.values()) < 2:
            raise ValueError(
                f"FID/KID need at least 2 real and 2 generated images, got {counts['real']} "
                f"real and {counts['fake']} generated"
            )
        result: dict = dict(counts)
        if self._fid is not None:
            result["fid"] = float(self._fid.compute())
        if self._kid is not None:
            subset = min(self.kid_subset_size, counts["real"], counts["fake"])
            self._kid.subset_size = subset
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                kid_mean, kid_std = self._kid.compute()
            result.update(kid=float(kid_mean), kid_std=float(kid_std), kid_subset_size=subset)
        if self._is is not None:
            result["is"], result["is_std"] = self._is.compute()
        return result

    def reset(self) -> None:
        for metric in (*self._metrics(), *([self._is] if self._is is not None else [])):
            metric.reset()
        self.counts = {"real": 0, "fake": 0}


def _batches(images, batch_size: int):
    if isinstance(images, Tensor):
        for start in range(0, images.shape[0], batch_size):
            yield images[start : start + batch_size]
    else:
        yield from images


def fid_kid(
    real_images,
    fake_images,
    feature_net: nn.Module,
    kid_subset_size: int = 1000,
    kid_subsets: int = 100,
    batch_size: int = 50,
    quantize: bool = True,
    seed: int = 0,
) -> dict:
    """FID and KID between two image sets.

    Each set is a float ``Nx3xHxW`` tensor in [0, 1] (scored ``batch_size`` at a time) or an
    iterable of such batches. Returns ``{"fid", "kid", "kid_std", "kid_subset_size", "real",
    "fake"}``; see :class:`FidKid`.
    """
    metric = FidKid(
        feature_net,
        kid_subset_size=kid_subset_size,
        kid_subsets=kid_subsets,
        quantize=quantize,
        seed=seed,
    )
    for batch in _batches(real_images, batch_size):
        metric.update(real=batch)
    for batch in _batches(fake_images, batch_size):
        metric.update(fake=batch)
    return metric.compute()

