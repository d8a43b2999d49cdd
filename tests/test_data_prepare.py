"""Standard data sets: verify, safe extraction, layout, resumable download, on archives and
a local HTTP server that the tests make."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from img2img.cli import main
from img2img.config import load_config
from img2img.data import imresize, read_image
from img2img.data.archives import Archive, safe_member_path
from img2img.data.catalog import REGISTRY, DatasetSpec, find_spec
from img2img.data.download import download
from img2img.data.prepare import prepare
from img2img.errors import DataError
from tests.tiny import build_dataset


def png(rng, h=12, w=24) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def make_tar(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return path


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def spec_for(archive: Path, name: str, members, url: str = "http://127.0.0.1:9/x", **kw) -> DatasetSpec:
    return DatasetSpec(
        name=name, kind="test", description="test",
        archives=(Archive(url, archive.name, sha256=sha256(archive)),),
        members=members, **kw,
    )


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob(".tmp-*"))


# --------------------------------------------------------------------------- layouts


def test_paired_tar_gz_layout_and_dataset(tmp_path):
    rng = np.random.default_rng(0)
    files = {f"facades/{split}/{i}.png": png(rng) for split in ("train", "val", "test") for i in range(2)}
    files["facades/._junk.png"] = b"resource fork"
    archive = make_tar(tmp_path / "facades.tar.gz", files)
    out = tmp_path / "datasets"
    target = prepare(spec_for(archive, "facades", ((0, "facades/", ""),)), out, archive, progress=False)
    assert target == out / "facades" and (target / ".complete").is_file()
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*.png")) == sorted(
        k[len("facades/"):] for k in files if "._" not in k)
    assert leftovers(out) == []
    cfg = load_config(None, ["task=pix2pix", f"data.root={target}", "data.load_size=12", "data.crop_size=8"])
    assert len(build_dataset(cfg, "train")) == 2 and len(build_dataset(cfg, "val")) == 2
    # prepared once: a second call leaves it alone
    assert prepare(spec_for(archive, "facades", ((0, "facades/", ""),)), out, archive) == target


def test_unpaired_zip_layout(tmp_path):
    rng = np.random.default_rng(1)
    files = {f"horse2zebra/{d}/{d}_{i}.jpg": png(rng) for d in ("trainA", "trainB", "testA", "testB")
             for i in range(2)}
    files["__MACOSX/horse2zebra/._trainA_0.jpg"] = b"junk"
    archive = make_zip(tmp_path / "horse2zebra.zip", files)
    target = prepare(spec_for(archive, "horse2zebra", ((0, "horse2zebra/", ""),)), tmp_path / "out",
                     archive, progress=False)
    assert sorted(p.name for p in target.iterdir() if p.is_dir()) == ["testA", "testB", "trainA", "trainB"]
    assert not (target / "__MACOSX").exists()


def test_two_archives_from_a_folder(tmp_path):
    rng = np.random.default_rng(2)
    given = tmp_path / "downloads"
    given.mkdir()
    train = make_zip(given / "DIV2K_train_HR.zip", {f"DIV2K_train_HR/{i:04d}.png": png(rng) for i in (1, 2)})
    valid = make_zip(given / "DIV2K_valid_HR.zip", {"DIV2K_valid_HR/0801.png": png(rng)})
    spec = DatasetSpec(
        name="DIV2K", kind="test", description="test",
        archives=(Archive("http://127.0.0.1:9/a", train.name, sha256=sha256(train)),
                  Archive("http://127.0.0.1:9/b", valid.name, sha256=sha256(valid))),
        members=((0, "DIV2K_train_HR/", "train/"), (1, "DIV2K_valid_HR/", "val/")),
    )
    target = prepare(spec, tmp_path / "out", given, progress=False)
    assert sorted(p.name for p in (target / "train").iterdir()) == ["0001.png", "0002.png"]
    assert [p.name for p in (target / "val").iterdir()] == ["0801.png"]


def test_sr_benchmark_lr_made_with_matlab_imresize(tmp_path):
    rng = np.random.default_rng(3)
    archive = make_tar(tmp_path / "benchmark.tar", {
        "benchmark/Set5/HR/baby.png": png(rng, 47, 50),
        "benchmark/Set5/LR_bicubic/X2/babyx2.png": png(rng, 23, 25),
        "benchmark/Set14/HR/other.png": png(rng, 20, 20),
    })
    spec = spec_for(archive, "Set5", ((0, "benchmark/Set5/HR/", "HR/"),), lr_scales=(2, 3, 4))
    target = prepare(spec, tmp_path / "out", archive, progress=False)
    assert sorted(p.name for p in target.iterdir()) == [".complete", "HR", "LRbicx2", "LRbicx3", "LRbicx4"]
    hr = read_image(target / "HR" / "baby.png").astype(np.float64)
    for scale, size in ((2, (23, 25)), (3, (15, 16)), (4, (11, 12))):
        lr = read_image(target / f"LRbicx{scale}" / "baby.png")
        assert lr.shape[:2] == size
        h, w = hr.shape[:2]
        expected = np.rint(np.clip(imresize(hr[: h - h % scale, : w - w % scale], 1 / scale), 0, 1) * 255)
        np.testing.assert_array_equal(np.rint(lr * 255), expected)


def test_a_folder_prepare_did_not_make_is_never_overwritten(tmp_path):
    rng = np.random.default_rng(4)
    archive = make_tar(tmp_path / "maps.tar.gz", {"maps/train/1.png": png(rng)})
    spec = spec_for(archive, "maps", ((0, "maps/", ""),))
    out = tmp_path / "out"
    (out / "maps" / "mywork").mkdir(parents=True)
    (out / "maps" / "mywork" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="already exists and was not made by img2img data prepare") as err:
        prepare(spec, out, archive, progress=False)
    assert str(out / "maps") in str(err.value)
    assert (out / "maps" / "mywork" / "notes.txt").read_text() == "mine"
    (out / "maps" / "mywork" / "notes.txt").unlink()
    (out / "maps" / "mywork").rmdir()
    target = prepare(spec, out, archive, progress=False)  # an empty folder is fine
    assert [p.name for p in (target / "train").iterdir()] == ["1.png"]
    assert json.loads((target / ".complete").read_text())["name"] == "maps"


def test_a_given_archive_inside_downloads_is_kept_on_a_bad_checksum(tmp_path):
    rng = np.random.default_rng(5)
    out = tmp_path / "out"
    (out / ".downloads").mkdir(parents=True)
    archive = make_tar(out / ".downloads" / "facades.tar.gz", {"facades/train/1.png": png(rng)})
    spec = DatasetSpec(name="facades", kind="test", description="test",
                       archives=(Archive("http://127.0.0.1:9/x", archive.name, sha256="0" * 64),),
                       members=((0, "facades/", ""),))
    for given in (archive, out / ".downloads"):
        with pytest.raises(DataError, match="sha256 is"):
            prepare(spec, out, given, progress=False)
        assert archive.is_file()


def test_two_archive_set_with_one_file_says_what_it_needs(tmp_path):
    rng = np.random.default_rng(9)
    a = make_zip(tmp_path / "one.zip", {"one/1.png": png(rng)})
    spec = DatasetSpec(name="two", kind="test", description="test",
                       archives=(Archive("http://127.0.0.1:9/one.zip", "one.zip"),
                                 Archive("http://127.0.0.1:9/two.zip", "two.zip")),
                       members=((0, "one/", "train/"), (1, "two/", "val/")))
    with pytest.raises(DataError, match=r"two needs 2 archives \(one.zip, two.zip\); pass the folder"):
        prepare(spec, tmp_path / "out", a, verify=False, progress=False)
    with pytest.raises(DataError, match=f"--archive: {tmp_path} has no two.zip"):
        prepare(spec, tmp_path / "out", tmp_path, verify=False, progress=False)


def test_archive_problems_name_the_archive(tmp_path):
    rng = np.random.default_rng(11)
    archive = make_zip(tmp_path / "facades.zip", {"facades/train/1.png": png(rng), "facades/../../x.txt": b"x"})
    with pytest.raises(DataError) as err:
        prepare(spec_for(archive, "facades", ((0, "facades/", ""),)), tmp_path / "out", archive, progress=False)
    assert str(err.value).startswith(f"{archive}: unsafe archive member")
    good = make_zip(tmp_path / "good.zip", {"facades/train/1.png": png(rng)})
    cut = tmp_path / "cut.zip"
    cut.write_bytes(good.read_bytes()[:-30])
    with pytest.raises(DataError) as err:
        prepare(spec_for(cut, "facades", ((0, "facades/", ""),)), tmp_path / "out", cut, progress=False)
    assert str(err.value) == (f"{cut}: truncated or corrupt zip archive (its table of contents at the end "
                              "is missing or damaged); download it again")


# --------------------------------------------------------------------------- refusals


def test_bad_checksum_leaves_nothing(tmp_path):
    rng = np.random.default_rng(5)
    archive = make_tar(tmp_path / "facades.tar.gz", {"facades/train/1.png": png(rng)})
    spec = DatasetSpec(name="facades", kind="test", description="test",
                       archives=(Archive("http://127.0.0.1:9/x", archive.name, sha256="0" * 64),),
                       members=((0, "facades/", ""),))
    out = tmp_path / "out"
    with pytest.raises(DataError, match="sha256 is") as err:
        prepare(spec, out, archive, progress=False)
    assert str(archive) in str(err.value)
    assert not (out / "facades").exists() and leftovers(out) == []
    assert archive.is_file()  # a file the user gave is never deleted
    md5_spec = DatasetSpec(name="facades", kind="test", description="test",
                           archives=(Archive("http://127.0.0.1:9/x", archive.name, md5="f" * 32),),
                           members=((0, "facades/", ""),))
    with pytest.raises(DataError, match="md5 is"):
        prepare(md5_spec, out, archive, progress=False)


@pytest.mark.parametrize("evil", ["../evil.png", "facades/../../evil.png", "/tmp/evil_abs.png",
                                  "C:/evil.png", "..\\evil.png"])
def test_path_traversal_is_refused(tmp_path, evil):
    rng = np.random.default_rng(6)
    for maker, suffix in ((make_tar, ".tar.gz"), (make_zip, ".zip")):
        archive = maker(tmp_path / f"facades{suffix}", {"facades/train/1.png": png(rng), evil: b"gotcha"})
        out = tmp_path / "out" / "deeper"
        with pytest.raises(DataError, match="unsafe archive member"):
            prepare(spec_for(archive, "facades", ((0, "", ""),)), out, archive, progress=False)
        assert not (out / "facades").exists() and leftovers(out) == []
        assert not (tmp_path / "out" / "evil.png").exists() and not (tmp_path / "evil.png").exists()


def test_links_are_refused(tmp_path):
    rng = np.random.default_rng(7)
    archive = make_tar(tmp_path / "facades.tar.gz", {"facades/train/1.png": png(rng)},
                       links={"facades/train/passwd.png": "/etc/passwd"})
    with pytest.raises(DataError, match="link"):
        prepare(spec_for(archive, "facades", ((0, "facades/", ""),)), tmp_path / "out", archive,
                progress=False)


def test_wrong_archive_is_named(tmp_path):
    rng = np.random.default_rng(8)
    archive = make_tar(tmp_path / "other.tar.gz", {"something/else.png": png(rng)})
    with pytest.raises(DataError, match="no files under 'facades/'"):
        prepare(spec_for(archive, "facades", ((0, "facades/", ""),)), tmp_path / "out", archive,
                progress=False)
    (tmp_path / "plain.txt").write_text("not an archive")
    plain = tmp_path / "plain.txt"
    with pytest.raises(DataError, match="not a zip or tar"):
        prepare(spec_for(plain, "facades", ((0, "facades/", ""),)), tmp_path / "out", plain,
                progress=False)


def test_safe_member_path():
    assert safe_member_path("./a/b/c.png").as_posix() == "a/b/c.png"
    for bad in ("/x", "../x", "a/../../x", "C:\\x", "a\\..\\..\\x"):
        with pytest.raises(DataError):
            safe_member_path(bad)


# --------------------------------------------------------------------------- downloads


class _Server:
    """A real HTTP server on 127.0.0.1 that serves one payload, honouring Range or not."""

    def __init__(self, payload: bytes, honour_range: bool = True):
        self.payload = payload
        self.honour_range = honour_range
        self.requests: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.requests.append({"path": self.path, "range": self.headers.get("Range", "")})
                if self.path.endswith("/missing"):
                    self.send_error(404)
                    return
                data, status = outer.payload, 200
                wanted = self.headers.get("Range", "")
                start = int(wanted[6:].split("-")[0]) if wanted.startswith("bytes=") else 0
                if outer.honour_range and start:
                    data, status = outer.payload[start:], 206
                self.send_response(status)
                if status == 206:
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(outer.payload) - 1}/{len(outer.payload)}")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("honour_range", [True, False])
def test_download_resumes_a_part_file(tmp_path, honour_range):
    payload = np.random.default_rng(9).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    dest = tmp_path / "dl" / "file.zip"
    dest.parent.mkdir()
    (tmp_path / "dl" / "file.zip.part").write_bytes(payload[:123_456])
    with _Server(payload, honour_range) as server:
        download(f"{server.url}/file.zip", dest, expected_size=len(payload), progress=False)
    assert dest.read_bytes() == payload and not (tmp_path / "dl" / "file.zip.part").exists()
    assert server.requests[0]["range"] == "bytes=123456-"


def test_download_touches_only_its_own_part_file(tmp_path):
    """A .part that is a link or a folder is refused (never followed, written or deleted);
    a .part another download holds is left alone; a download that received nothing leaves
    no .part behind."""
    payload = b"p" * 5000
    dest = tmp_path / "dl" / "file.zip"
    dest.parent.mkdir()
    part = dest.parent / "file.zip.part"
    precious = tmp_path / "precious.bin"
    precious.write_bytes(b"keep me")
    part.symlink_to(precious)
    with _Server(payload) as server:
        with pytest.raises(DataError, match=r"file\.zip\.part: cannot write the partial download"):
            download(f"{server.url}/file.zip", dest, expected_size=len(payload), progress=False)
        part.unlink()
        part.mkdir()
        with pytest.raises(DataError, match=r"file\.zip\.part: cannot write the partial download"):
            download(f"{server.url}/file.zip", dest, expected_size=len(payload), progress=False)
        assert not server.requests
    assert precious.read_bytes() == b"keep me" and part.is_dir() and not dest.exists()
    part.rmdir()
    part.write_bytes(payload[:100])
    with open(part, "rb") as held, _Server(payload) as server:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DataError, match=f"another process is downloading {dest} "):
            download(f"{server.url}/file.zip", dest, expected_size=len(payload), progress=False)
        assert not server.requests
    assert part.read_bytes() == payload[:100] and not dest.exists()
    with _Server(b"x") as server:
        with pytest.raises(DataError, match="HTTP 404"):
            download(f"{server.url}/missing", tmp_path / "m.zip", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dl", "precious.bin"]
    with _Server(payload) as server:  # the held .part, once released, is resumed
        download(f"{server.url}/file.zip", dest, expected_size=len(payload), progress=False)
    assert dest.read_bytes() == payload and not part.exists()
    assert server.requests[0]["range"] == "bytes=100-"


def test_download_errors_are_data_errors(tmp_path):
    with _Server(b"x") as server:
        with pytest.raises(DataError, match="HTTP 404"):
            download(f"{server.url}/missing", tmp_path / "m.zip", progress=False)
    with pytest.raises(DataError, match="--archive"):
        download("http://127.0.0.1:9/nothing.zip", tmp_path / "n.zip", progress=False, timeout=5)


def test_prepare_downloads_verifies_and_deletes_a_bad_download(tmp_path):
    rng = np.random.default_rng(10)
    archive = make_tar(tmp_path / "served.tar.gz", {"facades/train/1.png": png(rng)})
    payload = archive.read_bytes()
    with _Server(payload) as server:
        spec = spec_for(archive, "facades", ((0, "facades/", ""),), url=f"{server.url}/facades.tar.gz")
        target = prepare(spec, tmp_path / "out", progress=False)
        assert (target / "train" / "1.png").is_file()
        assert (tmp_path / "out" / ".downloads" / "served.tar.gz").read_bytes() == payload
        bad = DatasetSpec(name="maps", kind="test", description="test",
                          archives=(Archive(f"{server.url}/maps.tar.gz", "maps.tar.gz", sha256="0" * 64),),
                          members=((0, "facades/", ""),))
        with pytest.raises(DataError, match="sha256"):
            prepare(bad, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / ".downloads" / "maps.tar.gz").exists()
    assert not (tmp_path / "out" / "maps").exists()


# --------------------------------------------------------------------------- registry and CLI


def test_registry_entries():
    names = {"facades", "maps", "edges2shoes", "cityscapes", "horse2zebra", "summer2winter_yosemite",
             "monet2photo", "DIV2K", "Set5", "Set14", "BSD100", "Urban100"}
    assert names <= set(REGISTRY)
    for spec in REGISTRY.values():
        for archive in spec.archives:
            assert archive.url.startswith("https://") and archive.checksum_source
            assert (archive.sha256 and len(archive.sha256) == 64) or (archive.md5 and len(archive.md5) == 32)
    assert find_spec("div2k") is REGISTRY["DIV2K"]
    with pytest.raises(DataError, match="known: facades"):
        find_spec("imagenet")


def test_cli_list_and_archive(tmp_path, capsys):
    assert main(["data", "prepare", "list"]) == 0
    out = capsys.readouterr().out
    assert "horse2zebra" in out and "Urban100" in out and "sha256" in out
    archive = make_tar(tmp_path / "facades.tar.gz", {"facades/train/1.png": b"not the real one"})
    assert main(["data", "prepare", "facades", "--out", str(tmp_path / "o"), "--archive", str(archive)]) == 2
    assert "md5 is" in capsys.readouterr().err
