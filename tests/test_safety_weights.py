"""No code runs from a weights file, and nothing is fetched from the Hub unless asked.

- Library weights in torch.hub's cache (VGG19 for the perceptual loss, the FID Inception)
  are hash-checked before they are read, and read with ``weights_only=True``: a pickle
  planted in a shared TORCH_HOME never runs.
- A model path that does not exist locally is "not found"; the Hugging Face Hub is used
  only for ``hf://owner/name[@revision]``.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import img2img
from img2img import files, model_io
from img2img.cli import main
from img2img.config import load_config
from img2img.errors import UserError
from img2img.metrics import fid
from img2img.nets import perceptual
from img2img.nets.perceptual import VGGFeatureExtractor
from img2img.tasks import build_generators, build_task
from tests.conftest import PYTHON, REPO

VGG_NAME = "vgg19-dcbb9e9d.pth"


class _Payload:
    """Unpickling this creates ``marker``: what a hostile file would do, harmlessly."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def hostile_pth(path: Path, marker: Path) -> Path:
    """A torch.save file that runs code (creates ``marker``) when fully unpickled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"features.0.weight": _Payload(marker)}, path)
    return path


def sha8(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:8]


def small_vgg_state(path: Path) -> dict[str, torch.Tensor]:
    """A vgg19 state dict with only conv1_1, saved to ``path``."""
    torch.manual_seed(0)
    state = {"features.0.weight": torch.randn(64, 3, 3, 3), "features.0.bias": torch.randn(64)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty TORCH_HOME; returns its hub checkpoint folder (not yet made)."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return home / "hub" / "checkpoints"


@pytest.fixture
def downloads(monkeypatch) -> list[tuple]:
    """Every torch.hub download attempted; none happens for real."""
    calls: list[tuple] = []

    def refuse(url, dst, hash_prefix=None, progress=True):
        calls.append((url, dst, hash_prefix))
        raise ConnectionError("downloads are off in this test")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return calls


# ----------------------------------------------------------------- VGG19 (perceptual loss)


def test_torchvision_vgg19_file_name_and_hash():
    from torchvision.models import VGG19_Weights

    from img2img.pretrained import name_hash_prefix, url_file_name

    assert perceptual.VGG19_IMAGENET_URL == VGG19_Weights.IMAGENET1K_V1.url
    assert url_file_name(perceptual.VGG19_IMAGENET_URL) == VGG_NAME
    assert name_hash_prefix(VGG_NAME) == "dcbb9e9d"


def test_planted_pickle_in_the_vgg19_cache_never_runs(torch_home, downloads, tmp_path):
    marker = tmp_path / "pwned"
    planted = hostile_pth(torch_home / VGG_NAME, marker)
    with pytest.raises(UserError) as info:
        VGGFeatureExtractor(["conv1_1"], weights="imagenet")
    message = str(info.value)
    assert not marker.exists(), "the planted pickle ran"
    assert str(planted) in message
    assert "expected dcbb9e9d" in message and "SHA-256" in message
    assert "Delete it" in message and "loss.vgg_weights=" in message
    assert "\n" not in message
    assert downloads == []  # a file is there: nothing is downloaded over it
    # The payload is live: torch.hub's own loader (weights_only=False) would have run it.
    torch.load(planted, weights_only=False)
    assert marker.exists()


def test_the_training_path_refuses_a_wrong_hash_cache_file(torch_home, downloads):
    small_vgg_state(torch_home / VGG_NAME)  # harmless content, wrong hash
    config = load_config(None, ["task=srgan", "model.generator.name=srresnet", "loss.perceptual_weight=1",
                                "loss.perceptual_layers={conv1_1: 1.0}", "loss.vgg_weights=imagenet"])
    with pytest.raises(UserError, match=rf"{VGG_NAME}: its SHA-256 begins .*expected dcbb9e9d"):
        build_task(config).setup_losses(torch.device("cpu"))
    assert downloads == []


def test_a_right_hash_cache_file_is_read_by_the_safe_reader(torch_home, downloads, monkeypatch, tmp_path):
    state = small_vgg_state(tmp_path / "staged.pth")
    name = f"vgg19-{sha8(tmp_path / 'staged.pth')}.pth"
    torch_home.mkdir(parents=True)
    (tmp_path / "staged.pth").rename(torch_home / name)
    monkeypatch.setattr(perceptual, "VGG19_IMAGENET_URL", f"https://download.invalid/models/{name}")
    read = []
    real_reader = files.read_weights_file
    monkeypatch.setattr(files, "read_weights_file", lambda p: read.append(Path(p)) or real_reader(p))
    net = VGGFeatureExtractor(["conv1_1"], weights="imagenet")
    assert torch.equal(net.features[0].weight, state["features.0.weight"])
    assert torch.equal(net.features[0].bias, state["features.0.bias"])
    assert read == [torch_home / name]
    assert downloads == []


def test_right_hash_is_not_enough_for_a_pickle_that_runs_code(torch_home, monkeypatch, tmp_path):
    marker = tmp_path / "pwned"
    staged = hostile_pth(tmp_path / "staged.pth", marker)
    name = f"vgg19-{sha8(staged)}.pth"
    torch_home.mkdir(parents=True)
    staged.rename(torch_home / name)
    monkeypatch.setattr(perceptual, "VGG19_IMAGENET_URL", f"https://download.invalid/models/{name}")
    with pytest.raises(UserError, match=rf"{name}: not a PyTorch weights file, or one holding more than tensors"):
        VGGFeatureExtractor(["conv1_1"], weights="imagenet")
    assert not marker.exists()


def test_a_missing_file_is_downloaded_with_its_hash_checked(torch_home, monkeypatch, tmp_path):
    good = tmp_path / "good.pth"
    state = small_vgg_state(good)
    name = f"vgg19-{sha8(good)}.pth"
    url = f"https://download.invalid/models/{name}"
    monkeypatch.setattr(perceptual, "VGG19_IMAGENET_URL", url)
    calls = []
    served = [good]

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, dst, hash_prefix))
        Path(dst).write_bytes(served[0].read_bytes())

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    net = VGGFeatureExtractor(["conv1_1"], weights="imagenet")
    assert calls == [(url, str(torch_home / name), sha8(good))]
    assert torch.equal(net.features[0].weight, state["features.0.weight"])

    # A download that skipped the hash check is still caught before the file is read.
    (torch_home / name).unlink()
    served[0] = tmp_path / "other.pth"
    torch.save({"x": torch.zeros(1)}, served[0])
    with pytest.raises(UserError, match=rf"{name}: its SHA-256 begins .*expected {sha8(good)}.*Delete it"):
        VGGFeatureExtractor(["conv1_1"], weights="imagenet")


def test_a_failed_download_says_to_pass_a_local_file(torch_home, downloads):
    with pytest.raises(UserError) as info:
        VGGFeatureExtractor(["conv1_1"], weights="imagenet")
    message = str(info.value)
    assert "cannot get torchvision's ImageNet VGG19 weights vgg19-dcbb9e9d.pth" in message
    assert "ConnectionError" in message and f"loss.vgg_weights=/path/to/{VGG_NAME}" in message
    assert [d[2] for d in downloads] == ["dcbb9e9d"]
    assert not (torch_home / VGG_NAME).exists()


def test_a_given_file_with_the_torchvision_name_must_have_its_hash(tmp_path):
    marker = tmp_path / "pwned"
    given = hostile_pth(tmp_path / "weights" / VGG_NAME, marker)
    with pytest.raises(UserError) as info:
        VGGFeatureExtractor(["conv1_1"], weights=str(given))
    message = str(info.value)
    assert str(given) in message and "expected dcbb9e9d" in message
    assert "Replace it with a good copy from https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in message
    assert not marker.exists()
    # Another name has no known hash: it goes straight to the safe reader, which refuses it.
    other = hostile_pth(tmp_path / "weights" / "vgg.pth", marker)
    with pytest.raises(UserError, match="vgg.pth: not a PyTorch weights file, or one holding more than tensors"):
        VGGFeatureExtractor(["conv1_1"], weights=str(other))
    assert not marker.exists()


# ----------------------------------------------------------------- FID Inception


def test_planted_pickle_in_the_fid_cache_never_runs(torch_home, tmp_path):
    marker = tmp_path / "pwned"
    planted = hostile_pth(torch_home / fid.FID_WEIGHTS_NAME, marker)
    with pytest.raises(UserError) as info:
        fid.load_fid_inception(None)
    message = str(info.value)
    assert not marker.exists()
    assert str(planted) in message and "expected 6726825d" in message
    assert "Delete it" in message and "eval.fid_weights=PATH" in message and fid.FID_WEIGHTS_URL in message
    # Given by path, the same file is refused the same way.
    with pytest.raises(UserError, match=r"expected 6726825d.*Download pt_inception"):
        fid.load_fid_inception(planted)
    assert not marker.exists()


def test_a_right_hash_fid_file_goes_on_to_the_safe_reader(torch_home, monkeypatch, tmp_path):
    staged = tmp_path / "staged.pth"
    torch.save({"fc.bias": torch.zeros(1008)}, staged)
    name = f"pt_inception-2015-12-05-{sha8(staged)}.pth"
    torch_home.mkdir(parents=True)
    staged.rename(torch_home / name)
    monkeypatch.setattr(fid, "FID_WEIGHTS_NAME", name)
    # Past the hash check and read: the keys are what is wrong with it.
    with pytest.raises(UserError, match=rf"{name} do not match the FID Inception-v3 \(missing keys"):
        fid.load_fid_inception(None)
    marker = tmp_path / "pwned"
    staged = hostile_pth(tmp_path / "hostile.pth", marker)
    name = f"pt_inception-2015-12-05-{sha8(staged)}.pth"
    staged.rename(torch_home / name)
    monkeypatch.setattr(fid, "FID_WEIGHTS_NAME", name)
    with pytest.raises(UserError, match=r"not a PyTorch weights file, or one holding more than tensors"):
        fid.load_fid_inception(None)
    assert not marker.exists()


# ----------------------------------------------------------------- Hub loading is explicit


@pytest.fixture
def hub_calls(monkeypatch) -> list[dict]:
    """snapshot_download replaced by a recorder that fetches nothing."""
    import huggingface_hub

    calls: list[dict] = []

    def record(repo_id, **kwargs):
        calls.append({"repo_id": repo_id, **kwargs})
        raise ConnectionError("no network in this test")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", record)
    return calls


def tiny_model(directory: Path) -> Path:
    config = load_config(None, ["task=pix2pix", "model.generator.name=unet",
                                "model.generator.num_downs=3", "model.generator.ngf=8"])
    torch.manual_seed(0)
    return model_io.save_model(directory, config, build_generators(config))


@pytest.fixture
def fetched_lines():
    """The log lines of img2img.inference at INFO and above."""
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("img2img.inference")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.mark.parametrize("name", ["owner/name", "runs/nothing", "nothing"])
def test_a_missing_local_path_is_not_found_and_never_fetched(name, hub_calls, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as info:
        img2img.load(name)
    message = str(info.value)
    assert message.startswith(f"model not found: {name} does not exist")
    assert "hf://owner/name" in message
    assert hub_calls == []


@pytest.mark.parametrize("command", ["predict", "eval", "export"])
def test_cli_commands_do_not_fetch_a_missing_path(command, hub_calls, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    (tmp_path / "data").mkdir()
    args = {
        "predict": ["predict", "owner/name", "x.png", "--out", "o"],
        "eval": ["eval", "owner/name", "--data", "data"],
        "export": ["export", "owner/name", "--format", "onnx", "--out", "m.onnx"],
    }[command]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "img2img: error: model not found: owner/name does not exist" in err and "hf://" in err
    assert "Traceback" not in err
    assert hub_calls == []


def test_predict_owner_name_in_a_fresh_process_exits_2_without_network(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [PYTHON, "-m", "img2img", "predict", "owner/name", "x.png", "--out", "o"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert lines[-1].startswith("img2img: error: model not found: owner/name does not exist")
    assert "hf://" in lines[-1] and "Traceback" not in run.stderr


@pytest.mark.parametrize("bad", ["hf://owner", "hf://owner/name@", "hf://owner/name@../main",
                                 "hf:///name", "hf://owner/name/extra"])
def test_malformed_hub_names_are_refused_before_any_fetch(bad, hub_calls):
    with pytest.raises(UserError, match="expected hf://owner/name or hf://owner/name@revision"):
        img2img.load(bad)
    assert hub_calls == []


def test_hf_prefix_fetches_the_pinned_revision_and_says_what(tmp_path, monkeypatch, fetched_lines, capsys):
    import huggingface_hub

    commit = "0123456789abcdef0123456789abcdef01234567"
    calls: list[dict] = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append({"repo_id": repo_id, **kwargs})
        folder = tmp_path / "hub" / repo_id.replace("/", "--") / "snapshots" / commit
        if not folder.exists():
            tiny_model(folder)
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    translator = img2img.load("hf://owner/name@v1.0", device="cpu")
    assert calls == [{"repo_id": "owner/name", "revision": "v1.0",
                      "allow_patterns": ["config.json", "model.safetensors"]}]
    folder = tmp_path / "hub" / "owner--name" / "snapshots" / commit
    assert fetched_lines == [
        f"fetched hf://owner/name from the Hugging Face Hub (revision v1.0, commit {commit}) into {folder}"
    ]
    expected = img2img.load(folder, device="cpu")(torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1)))
    got = translator(torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(got, expected)

    # No revision: the default branch; and the same through `img2img predict`.
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "x.png")
    assert main(["predict", "hf://owner/name", str(tmp_path / "x.png"), "--out", str(tmp_path / "o"),
                 "--device", "cpu"]) == 0
    assert calls[-1]["repo_id"] == "owner/name" and calls[-1]["revision"] is None
    assert fetched_lines[-1].startswith("fetched hf://owner/name from the Hugging Face Hub (revision main")
    assert (tmp_path / "o" / "x.png").is_file()


def test_a_hub_repo_without_a_model_is_named(tmp_path, monkeypatch):
    import huggingface_hub

    def fake_snapshot_download(repo_id, **kwargs):
        (tmp_path / "snap").mkdir(exist_ok=True)
        (tmp_path / "snap" / "config.json").write_text("{}")
        return str(tmp_path / "snap")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    with pytest.raises(UserError, match=r"model hf://owner/name@dev: the Hub repo has no model\.safetensors"):
        img2img.load("hf://owner/name@dev")


def test_hub_fetch_failures_are_one_line(hub_calls):
    with pytest.raises(UserError) as info:
        img2img.load("hf://owner/name@abc123")
    message = str(info.value)
    assert message.startswith("model hf://owner/name@abc123 could not be fetched from the Hugging Face Hub")
    assert "ConnectionError" in message and "\n" not in message
    assert hub_calls[0]["revision"] == "abc123"


def _calls(path: Path) -> list[tuple[str, dict]]:
    """(dotted name of what is called, {keyword: constant value}) for each call in a file."""
    import ast

    def dotted(node) -> str:
        if isinstance(node, ast.Attribute):
            return f"{dotted(node.value)}.{node.attr}"
        return node.id if isinstance(node, ast.Name) else "?"

    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            keywords = {k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)}
            found.append((dotted(node.func), keywords))
    return found


def test_weights_and_hub_files_are_read_in_one_place_each():
    """The relatives: nothing in img2img/ or tools/ loads weights around the safe reader
    (files.read_weights_file), through torch.hub's unpickling loaders, or from the Hub
    around inference.loading.fetch_hub_model."""
    only_in = {"torch.load": "img2img/files.py", "snapshot_download": "img2img/inference/loading.py"}
    never = ("load_state_dict_from_url", "get_state_dict", "hf_hub_download", "pickle.load",
             "pickle.loads", "torch.hub.load", "Unpickler")
    found = []
    for folder in ("img2img", "tools"):
        for path in sorted((REPO / folder).rglob("*.py")):
            where = path.relative_to(REPO).as_posix()
            for name, keywords in _calls(path):
                last = name.rsplit(".", 1)[-1]
                if (any(name == n or last == n for n in never)
                        or (name in only_in or last in only_in) and only_in.get(name, only_in.get(last)) != where
                        or keywords.get("weights_only") is False or keywords.get("allow_pickle") is True):
                    found.append(f"{where}: {name}({keywords})")
    assert found == []
