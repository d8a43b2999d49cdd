"""Library weights kept in torch.hub's cache, checked by hash and read without running code.

torchvision and pytorch-fid keep their downloads in ``<torch hub dir>/checkpoints/<file>``
(``$TORCH_HOME/hub/checkpoints``), a folder that may be shared with other users and
programs. torch.hub's own loader unpickles whatever file it finds there in full
(``weights_only=False``) and checks no hash once the file exists, so a file planted there
would run code. img2img instead:

- downloads a missing file with :func:`torch.hub.download_url_to_file`, checking the hash;
- checks the SHA-256 of a known file (one whose name carries its hash) before anything
  reads it. torch.hub's convention (``load_state_dict_from_url`` with ``check_hash=True``):
  in ``name-<hex>.ext`` the hex digits (8 or more) are the first digits of the SHA-256;
- leaves the reading to :func:`img2img.files.read_weights_file` (``weights_only=True``):
  tensors and plain containers only, never arbitrary objects.

The callers: the perceptual loss's VGG19 (:mod:`img2img.nets.perceptual`) and the FID
Inception (:mod:`img2img.metrics.fid`).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import urlparse

from img2img.errors import UserError
from img2img.files import first_line
from img2img.log import get_logger, is_main_process

log = get_logger(__name__)

HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.[A-Za-z0-9]+$")


def name_hash_prefix(file_name: str) -> str | None:
    """The SHA-256 prefix a file name carries (``vgg19-dcbb9e9d.pth`` -> ``dcbb9e9d``)."""
    found = HASH_IN_NAME.search(file_name)
    return found[1] if found else None


def url_file_name(url: str) -> str:
    return Path(urlparse(url).path).name


def hub_checkpoint_path(file_name: str) -> Path:
    """Where torch.hub keeps ``file_name``: ``<torch.hub.get_dir()>/checkpoints/file_name``."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256_prefix(path: Path, prefix: str, what: str, fix: str) -> None:
    """Raise a UserError naming ``path`` unless its SHA-256 starts with ``prefix``; nothing
    else is done with the file. ``fix`` is the sentence that says what to do."""
    try:
        digest = sha256_file(path)
    except OSError as err:
        raise UserError(f"cannot read {path} ({what}): {err.strerror or err}. {fix}") from None
    if not digest.startswith(prefix):
        raise UserError(
            f"{path}: its SHA-256 begins {digest[:len(prefix)]}, expected {prefix} (the hash in "
            f"the name of {what}), so it was not loaded: a damaged download, or a file someone "
            f"else put there. {fix}"
        )


def check_named_hash(path: Path, known_name: str, what: str, fix: str) -> None:
    """When ``path`` is named ``known_name`` and that name carries a hash, check it (see
    :func:`check_sha256_prefix`); any other name has no known hash and passes."""
    prefix = name_hash_prefix(known_name)
    if path.name == known_name and prefix is not None:
        check_sha256_prefix(path, prefix, what, fix)


def fetch_hub_checkpoint(url: str, what: str, fix: str) -> Path:
    """The copy of ``url``'s file in torch.hub's checkpoint folder, downloaded (its hash
    checked on the way) when absent, and its hash checked when its name carries one. The
    file is not read here: read it with :func:`img2img.files.read_weights_file`.

    Failures are UserErrors: a failed download ends with ``fix`` (what to do instead, e.g.
    "download X elsewhere and pass loss.vgg_weights=FILE"); a wrong hash names the file and
    says to delete it, or to follow ``fix``."""
    import torch

    name = url_file_name(url)
    prefix = name_hash_prefix(name)
    path = hub_checkpoint_path(name)
    if not path.is_file():
        log.info("downloading %s to %s", url, path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), hash_prefix=prefix, progress=is_main_process())
        except Exception as err:  # no network, a proxy error, a truncated download, a bad hash
            reason = first_line(err, "")
            raise UserError(f"cannot get {what} ({type(err).__name__}: {reason}); {fix}") from None
    if prefix is not None:
        check_sha256_prefix(path, prefix, what, f"Delete it (it is then downloaded again), or {fix}")
    return path
