"""``img2img eval --report``: one self-contained HTML page, checked in a real headless
Chromium (Debian's chromium and chromium-driver, driven by selenium): it renders, every
image loads, and clicking a column title reorders the rows."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import torch

from img2img.cli import main
from img2img.config import load_config
from img2img.model_io import save_model
from img2img.tasks import build_generators
from tests.tiny import make_task_data

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("report")
    config = load_config(None, ["task=srgan", "model.generator.name=srresnet", "model.generator.n_blocks=1",
                                "model.generator.ngf=8", "data.scale=2"])
    torch.manual_seed(0)
    model = save_model(root / "model", config, build_generators(config))
    data = make_task_data(root / "data", "srgan", n_train=1, n_val=4, size=32)
    page = root / "out" / "report.html"
    assert main(["eval", str(model), "--data", str(data / "val"), "--device", "cpu", "--report", str(page),
                 "--out", str(root / "out" / "result.json")]) == 0
    return page, root / "out" / "result.json"


def test_report_is_one_self_contained_page(report, capsys):
    page, _ = report
    text = page.read_text(encoding="utf-8")
    # no file, script or style from anywhere else: every image is a data URI
    assert not re.search(r"(src|href)=\"(?!data:)", text)
    assert text.count("data:image/jpeg;base64,") == 4 * 4  # 4 images x input | output | target | baseline
    for title in ("LR (nearest)", "SR", "HR", "baseline (bicubic)", "psnr gap", "gap (+: model better)"):
        assert title in text
    capsys.readouterr()


def _browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _column(driver, index: int) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#images tbody tr'))"
        ".map(r => r.cells[arguments[0]].dataset.value);", index)


@pytest.mark.slow
def test_report_in_headless_chromium(report, tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are missing (.ci/run installs them)")
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium")
    from selenium.webdriver.common.by import By

    page, _ = report
    driver = _browser(tmp_path / "profile")
    try:
        driver.get(page.as_uri())
        assert driver.title.startswith("srgan model")
        widths = driver.execute_script(
            "return Array.from(document.images).map(i => i.complete ? i.naturalWidth : -1);")
        assert len(widths) == 16 and all(w > 0 for w in widths), widths
        assert driver.execute_script("return document.querySelector('#images').getBoundingClientRect().height") > 100
        headers = {h.text: h for h in driver.find_elements(By.CSS_SELECTOR, "#images th[data-col]")}
        gap_col = int(headers["psnr gap"].get_attribute("data-col"))
        start = [float(v) for v in _column(driver, gap_col)]
        assert start == sorted(start)  # worst gap first
        headers["psnr gap"].click()
        ascending = [float(v) for v in _column(driver, gap_col)]
        headers["psnr gap"].click()
        descending = [float(v) for v in _column(driver, gap_col)]
        assert ascending == sorted(start) and descending == sorted(start, reverse=True)
        assert descending != start
        names = _column(driver, 0)
        headers["image"].click()
        assert _column(driver, 0) == sorted(names)
    finally:
        driver.quit()
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
