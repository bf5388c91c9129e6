"""The demo page: its answers to good and bad uploads, the misclassified tab, app.py, and the page in a real browser."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import time

import numpy as np
import pytest
from PIL import Image

from cifar_lightning.demo.app import Demo, build_demo, example_files
from harness import REPO

CHECKPOINT = REPO / "results" / "fast" / "last.ckpt"
ARTIFACTS = REPO / "test-artifacts"  # kept after the run (ignored by git): the browser's screenshot
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def demo():
    return Demo(CHECKPOINT)


def test_ten_examples_ship_one_of_each_class():
    assert [p.stem for p in example_files()] == [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]


def test_an_example_gets_its_top_classes_and_an_overlay(demo):
    top, shown, message = demo.answer(str(example_files()[3]), 3, None, 0.5)
    assert list(top)[0] == "cat" and len(top) == 3 and message.startswith("cat (")
    assert shown.shape == (256, 256, 3) and shown.dtype == np.uint8
    assert len(demo.answer(str(example_files()[3]), 50, None, 0.5)[0]) == 10  # k is capped at the classes there are
    assert len(demo.answer(str(example_files()[3]), 0, None, 0.5)[0]) == 1
    other = demo.answer(str(example_files()[3]), 3, demo.layers[0], 1.0)[1]
    assert not np.array_equal(other, shown)  # the layer and opacity controls change the overlay


@pytest.mark.parametrize("case", ["text renamed .png", "1x1", "9000x5000", "empty upload"])
def test_a_bad_upload_is_one_line(case, demo, tmp_path):
    path = tmp_path / "upload.png"
    if case == "text renamed .png":
        path.write_text("this is not an image")
    elif case == "1x1":
        Image.new("RGB", (1, 1)).save(path)
    elif case == "9000x5000":  # 45 megapixels: past the one reader's bound, refused from the header
        Image.new("L", (9000, 5000)).save(path)
    top, shown, message = demo.answer(None if case == "empty upload" else str(path), 3, None, 0.5)
    assert top is None and shown is None and "\n" not in message and "Traceback" not in message
    expected = {
        "text renamed .png": "cannot read image upload",
        "1x1": "too small",
        "9000x5000": "more than the 40 megapixels",
        "empty upload": "No image",
    }
    assert expected[case] in message


def test_the_misclassified_tab_says_when_the_test_split_is_missing(real_data_dir, tmp_path):
    items, message = Demo(CHECKPOINT, cache_dir=tmp_path).misclassified(None, 0.5)
    assert items == [] and "--cache_dir" in message
    items, message = Demo(CHECKPOINT).misclassified(None, 0.5)  # the default cache folder, where the fit decoded it
    assert len(items) == 24 and " → " in items[0][1] and items[0][0].shape == (256, 256, 3)


def test_app_py_builds_the_page_without_launching_it(monkeypatch):
    import gradio as gr

    monkeypatch.setenv("CKPT", str(CHECKPOINT))
    spec = importlib.util.spec_from_file_location("space_app", REPO / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    assert isinstance(app.demo, gr.Blocks)
    assert ".[demo]" in (REPO / "requirements.txt").read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("CIFAR_LIGHTNING_NO_SKIPS") == "1":
            pytest.fail("the demo's browser test needs Debian's chromium and chromium-driver (.ci/run installs them)")
        pytest.skip("needs chromium and chromium-driver (apt install chromium chromium-driver); .ci/run installs them")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
    ):
        options.add_argument(flag)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def wait_for(condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError("the page did not show it in time")


@pytest.mark.slow
def test_the_page_in_a_real_browser(browser, tmp_path):
    from selenium.webdriver.common.by import By

    page = build_demo(CHECKPOINT)
    port = free_port()
    page.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, share=False, ssr_mode=False
    )
    try:
        browser.get(f"http://127.0.0.1:{port}/")

        def upload(path):
            wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))[0].send_keys(str(path))

        def message():
            return browser.find_element(By.ID, "message").text

        upload(REPO / "cifar_lightning" / "demo" / "examples" / "ship.jpg")
        wait_for(lambda: message().startswith("ship ("))
        assert browser.find_element(By.ID, "classes").text.splitlines()[1] == "ship"  # the label's headline class
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "demo.png"))

        # a bad upload: one line in the page, and the server goes on answering
        (tmp_path / "notes.png").write_text("not pixels")
        browser.find_element(By.CSS_SELECTOR, "#upload button[aria-label='Clear']").click()
        upload(tmp_path / "notes.png")
        wait_for(lambda: "cannot read image" in message())
        browser.find_element(By.CSS_SELECTOR, "#upload button[aria-label='Clear']").click()
        upload(REPO / "cifar_lightning" / "demo" / "examples" / "cat.jpg")
        wait_for(lambda: message().startswith("cat ("))
        # nothing came from anywhere but this server: no font, CDN or analytics fetch
        resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert resources and all(url.startswith(f"http://127.0.0.1:{port}/") for url in resources), [
            u for u in resources if not u.startswith(f"http://127.0.0.1:{port}/")
        ]
    finally:
        page.close()
