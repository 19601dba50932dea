"""The studio end to end: its HTTP API (queue, cancel, concurrent jobs, bad input, confinement) and its pages in
headless Chromium (Debian's chromium + chromium-driver through selenium): every page loads, a sampling and an
inpainting run through the UI, and the images that come back are checked. Screenshots of each page go to
test-artifacts/studio/ (docs/img/studio/ holds the README's copies)."""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.proc import in_process

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "studio"
H = W = 16  # the test run's images


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A folder holding one small class-conditional MNIST run (16 x 16) with its loss curve, samples and summary."""
    root = tmp_path_factory.mktemp("studio")
    p = in_process("train", "--data", "mnist", "--set", "data.limit=512", "--set", f"data.image_size={H}",
                   "--set", "unet.base_channels=16", "--set", "unet.channel_mult=[1,2]", "--set",
                   "unet.attention_levels=[1]", "--set", "unet.num_classes=10", "--set", "train.cond_dropout=0.1",
                   "--set", "train.log_every=2", "--max-images", "256", "--sample", "4", "--set", "sample.nfe=4",
                   "--set", "sample.sampler=ddim", "--out", "runs/tiny", "--quiet", cwd=root)
    assert p.returncode == 0, p.stderr
    return root


@pytest.fixture(scope="module")
def server(runs):
    """The studio on a free loopback port, one worker, writing under out/."""
    from difflab.studio.app import Studio, serve_in_thread

    studio = Studio([runs / "runs"], runs / "out", workers=1)
    base, srv = serve_in_thread(studio)
    yield base, studio
    srv.should_exit = True


def call(base: str, path: str, body=None, form: bytes | None = None, ctype: str = "application/json"):
    """(status, parsed JSON) of a request; errors come back as their JSON too."""
    data = json.dumps(body).encode() if body is not None and form is None else form
    req = urllib.request.Request(base + path, data=data, headers={"Content-Type": ctype} if data else {},
                                 method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def wait(base: str, job: str, polls: int = 3000) -> dict:
    """The job's final state, polling at most `polls` times, 0.1 s apart."""
    for _ in range(polls):
        _, st = call(base, f"/api/jobs/{job}")
        if st["state"] in ("done", "failed", "cancelled"):
            return st
        time.sleep(0.1)
    raise AssertionError(f"job {job} did not end")


def decode(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def run_id(base: str) -> str:
    return call(base, "/api/runs")[1]["runs"][0]["id"]


def multipart(fields: dict, files: dict) -> tuple[bytes, str]:
    boundary = "----difflabtest"
    out = b""
    for k, v in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
    for k, (name, data) in files.items():
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{name}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


# -- the API ---------------------------------------------------------------------------------------------------------
def test_sampling_streams_the_trajectory_and_writes_only_its_own_folder(server, runs):
    base, studio = server
    rid = run_id(base)
    status, r = call(base, "/api/sample", {"run": rid, "nfe": 4, "num": 4, "classes": ["7"], "guidance": 2})
    assert status == 200, r
    with urllib.request.urlopen(f"{base}/api/jobs/{r['job']}/events", timeout=120) as stream:
        events = [json.loads(line[6:]) for line in stream.read().decode().splitlines() if line.startswith("data: ")]
    steps = [e for e in events if e["type"] == "step"]
    assert [e["i"] for e in steps] == [1, 2, 3, 4] and events[-1]["type"] == "done"
    assert decode(steps[-1]["x0"]).std() > 0 and decode(steps[0]["xt"]).shape == decode(steps[-1]["xt"]).shape
    grid = decode(events[-1]["result"]["grid"])
    assert grid.ndim == 2 and grid.std() > 0  # grey, not blank
    with urllib.request.urlopen(f"{base}/api/jobs/{r['job']}/files/samples.npz", timeout=30) as f:
        assert np.load(io.BytesIO(f.read()))["images"].shape == (4, H, W)
    written = {p.relative_to(runs) for p in runs.rglob("*") if p.is_file() and "out" in p.parts}
    assert written and all(p.parts[0] == "out" for p in written)


def test_jobs_queue_cancel_and_many_at_once_all_finish(server):
    base, studio = server
    rid = run_id(base)
    _, long = call(base, "/api/sample", {"run": rid, "nfe": 250, "num": 64})
    _, queued = call(base, "/api/sample", {"run": rid, "nfe": 4, "num": 2})
    assert call(base, f"/api/jobs/{queued['job']}")[1]["state"] == "queued"  # one worker: the second waits
    assert call(base, f"/api/jobs/{long['job']}/cancel", {})[1]["state"] in ("running", "cancelled", "queued")
    assert wait(base, long["job"])["state"] == "cancelled"
    assert wait(base, queued["job"])["state"] == "done"  # the cancelled job freed its slot
    results = {}

    def one(k: int) -> None:
        _, r = call(base, "/api/sample", {"run": rid, "nfe": 3, "num": 2, "seed": k})
        results[k] = wait(base, r["job"])

    threads = [threading.Thread(target=one, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert len(results) == 6 and all(r["state"] == "done" for r in results.values())
    grids = {k: r["result"]["grid"] for k, r in results.items()}
    assert len(set(grids.values())) == 6  # each tab got its own seed's images, none crossed over
    _, again = call(base, "/api/sample", {"run": rid, "nfe": 3, "num": 2, "seed": 3})
    assert wait(base, again["job"])["result"]["grid"] == grids[3]  # and the same seed draws the same images


@pytest.mark.parametrize("path, body, status, says", [
    ("/api/sample", {"run": "../../etc", "nfe": 4}, 400, "no run"),
    ("/api/sample", {"run": "RUN", "nfe": "many"}, 400, "must be an integer"),
    ("/api/sample", {"run": "RUN", "nfe": 100000}, 400, "nfe must be"),
    ("/api/sample", {"run": "RUN", "sampler": "magic"}, 400, "sampler"),
    ("/api/sample", {"nfe": 4}, 400, "naming the run"),
    ("/api/runs/RUN/files/..%2F..%2Fcheckpoint.safetensors", None, 404, "Not Found"),
    ("/static/..%2F..%2Fapp.py", None, 404, "Not Found"),
    ("/static/app.py", None, 400, "no static file"),
    ("/api/runs/RUN/files/checkpoint.safetensors", None, 400, "not a file the studio shows"),
    ("/api/jobs/j999/files/samples.npz", None, 404, "no such job"),
    ("/api/runs/RUN/test-image?index=999999", None, 400, "index must be")])
def test_bad_requests_get_one_clear_message_and_the_server_keeps_serving(server, path, body, status, says):
    base, _ = server
    rid = run_id(base)
    got, r = call(base, path.replace("RUN", rid), {k: (rid if v == "RUN" else v) for k, v in body.items()}
                  if body is not None else None)
    assert got == status and says in r["error"], r
    assert call(base, "/api/runs")[0] == 200


def test_bad_uploads_are_refused_and_nothing_is_written(server, runs):
    base, _ = server
    rid = run_id(base)
    before = sorted(p for p in (runs / "out").rglob("*")) if (runs / "out").exists() else []
    big = b"\x89PNG" + os.urandom(2_100_000)
    wrong = io.BytesIO()
    Image.new("L", (20, 20)).save(wrong, format="PNG")
    for files, says in (({"image": ("a.png", b"not an image at all")}, "not an image"),
                        ({"image": ("big.png", big)}, "larger than"),
                        ({"mask": ("m.png", wrong.getvalue())}, "20 x 20")):
        form, ctype = multipart({"run": rid, "task": "inpaint", "nfe": "4"}, files)
        got, r = call(base, "/api/restore", form=form, ctype=ctype)
        assert got == 400 and says in r["error"], r
    form, ctype = multipart({"run": rid, "task": "teleport"}, {})
    assert call(base, "/api/restore", form=form, ctype=ctype)[1]["error"].startswith("task must be one of")
    after = sorted(p for p in (runs / "out").rglob("*")) if (runs / "out").exists() else []
    assert after == before and call(base, "/api/status")[0] == 200


# -- the pages in Chromium -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        why = "headless Chromium is missing: apt-get install chromium chromium-driver (.ci/run installs them)"
        if os.environ.get("DIFFLAB_REQUIRE_BROWSER"):
            pytest.fail(why)
        pytest.skip(why)
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--window-size=1400,1000",
                 f"--user-data-dir={Path(os.environ.get('TMPDIR', '/tmp')) / f'difflab-chrome-{os.getpid()}'}"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(driver), options=opts)
    drv.set_page_load_timeout(60)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield drv
    drv.quit()


def until(drv, condition, timeout: float = 240):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(drv, timeout, poll_frequency=0.2).until(condition)


def test_every_page_loads_in_chromium(server, browser):
    from selenium.webdriver.common.by import By

    base, _ = server
    rid = run_id(base)
    for name, path, ready in (("runs", "/", "#runs tbody tr"), ("run", f"/run/{rid}", "#images img"),
                              ("compare", "/compare", "#run option"), ("sample", "/sample", "#run option"),
                              ("restore", "/restore", "#run option")):
        browser.get(base + path)
        until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ready))
        assert browser.find_element(By.ID, "error").text == "", name
        browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def test_sampling_through_the_ui(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    base, _ = server
    browser.get(base + "/sample")
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#run option"))
    nfe = browser.find_element(By.ID, "nfe")  # a bad value through the UI: the page says what is wrong
    nfe.clear()
    nfe.send_keys("100000")
    browser.find_element(By.ID, "go").click()
    until(browser, lambda d: "nfe must be 1..250" in d.find_element(By.ID, "error").text, 60)
    Select(browser.find_element(By.ID, "sampler")).select_by_value("dpmpp_2m")
    for field, value in (("nfe", "6"), ("num", "9"), ("guidance", "2")):
        el = browser.find_element(By.ID, field)
        el.clear()
        el.send_keys(value)
    Select(browser.find_element(By.ID, "classes")).select_by_visible_text("3")
    browser.find_element(By.ID, "go").click()
    until(browser, lambda d: d.find_element(By.ID, "result").get_attribute("src"))
    grid = decode(browser.find_element(By.ID, "result").get_attribute("src"))
    assert grid.shape == (4 * (3 * (H + 2) + 2),) * 2 and grid.std() > 0  # a 3 x 3 grid, 4x upscaled, not blank
    assert decode(browser.find_element(By.ID, "x0").get_attribute("src")).std() > 0
    assert browser.find_element(By.ID, "state").text == "done" and browser.find_element(By.ID, "error").text == ""
    browser.save_screenshot(str(ARTIFACTS / "sample-done.png"))


def test_inpainting_through_the_ui_keeps_the_unmasked_pixels(server, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    base, _ = server
    browser.get(base + "/restore")
    until(browser, lambda d: d.find_element(By.ID, "canvas").get_attribute("data-base"))
    Select(browser.find_element(By.ID, "task")).select_by_value("inpaint")
    Select(browser.find_element(By.ID, "method")).select_by_value("project")
    nfe = browser.find_element(By.ID, "nfe")
    nfe.clear()
    nfe.send_keys("8")
    canvas = browser.find_element(By.ID, "canvas")  # 16 x 16 shown 8x: paint a band across rows 7-8
    size = canvas.size
    ActionChains(browser).move_to_element_with_offset(canvas, -size["width"] // 2 + 4, 0).click_and_hold() \
        .move_by_offset(size["width"] - 8, 0).release().perform()
    browser.save_screenshot(str(ARTIFACTS / "restore-drawn.png"))
    browser.find_element(By.ID, "go").click()
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "img.result-panel"))
    browser.save_screenshot(str(ARTIFACTS / "restore-done.png"))
    panels = {p.get_attribute("data-name"): decode(p.get_attribute("src"))
              for p in browser.find_elements(By.CSS_SELECTOR, "img.result-panel")}
    pick = lambda a: a[8:8 + 4 * H:4, 8:8 + 4 * W:4].astype(float)  # noqa: E731 - one image: pad 2, 4x upscaled
    result, truth, shown = pick(panels["difflab (project)"]), pick(panels["truth"]), pick(panels["measurement"])
    kept = np.ones((H, W), bool)
    kept[4:12] = False  # the painted band (brush radius 1.5 pixels around row 8) and a margin
    assert np.abs(result - truth)[kept].mean() < 6  # observed pixels kept (measurement noise 0.01 ~ 1.3 levels)
    assert shown[8].max() < 130 < truth.max()  # the painted row was removed from the measurement (0 = grey)
    assert result.std() > 0 and set(panels) >= {"measurement", "truth", "difflab (project)"}
    browser.save_screenshot(str(ARTIFACTS / "restore-done.png"))


def test_the_studio_command_refuses_folders_without_runs(tmp_path):
    (tmp_path / "empty").mkdir()
    for args, says in ((["--run", "missing"], "is not a folder"), (["--run", "empty"], "no diffusion runs"),
                       (["--run", "empty", "--workers", "0"], "--workers must be at least 1")):
        p = in_process("studio", *args, cwd=tmp_path)
        assert p.returncode == 2 and says in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
