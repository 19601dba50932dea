"""The README's screenshots of difflab studio: each page in headless Chromium (Debian's chromium + chromium-driver),
after a sampling, a comparison and an inpainting through the UI, written to docs/img/studio/.

  .venv/bin/python bench/studio_screenshots.py --run bench/out --sample out-text_to_image-word \
      --prompt "a seven on the right, a three on the left" --compare out-diffusers_import-run \
      --restore out-diffusers_import-run --page out-text_to_image-word
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a run folder (or a folder of runs)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "img" / "studio"))
    for page in ("sample", "compare", "restore", "page"):
        ap.add_argument(f"--{page}", help=f"the run id shown on the {page} page (default: the first run)")
    ap.add_argument("--prompt", help="the sample page's prompt (a text-to-image run)")
    args = ap.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from difflab.studio.app import Studio, serve_in_thread

    work = Path(tempfile.mkdtemp())
    studio = Studio([Path(args.run)], work / "out")
    base, server = serve_in_thread(studio)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--window-size=1400,900",
                 f"--user-data-dir={work / 'chrome'}"):
        opts.add_argument(flag)
    d = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    wait = lambda cond: WebDriverWait(d, 600, 0.2).until(cond)  # noqa: E731
    try:
        first = next(iter(studio.catalog.runs))

        def open_page(path: str, run: str | None) -> None:
            d.get(f"{base}{path}" + (f"?run={run}" if run else ""))
            wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#run option"))
            if run:
                d.execute_script("document.getElementById('run').dispatchEvent(new Event('change'))")

        open_page("/sample", args.sample)
        if args.prompt:
            d.find_element(By.ID, "prompt").send_keys(args.prompt)
            g = d.find_element(By.ID, "guidance")
            g.clear()
            g.send_keys("3")
        Select(d.find_element(By.ID, "sampler")).select_by_value("dpmpp_3m")
        num = d.find_element(By.ID, "num")
        num.clear()
        num.send_keys("16")
        d.find_element(By.ID, "go").click()
        wait(lambda d: d.find_element(By.ID, "result").get_attribute("src"))
        d.save_screenshot(str(out / "sample.png"))
        open_page("/compare", args.compare)
        for side, sampler in (("a", "ddim"), ("b", "dpmpp_3m")):
            Select(d.find_element(By.CSS_SELECTOR, f"[data-side={side}] .sampler")).select_by_value(sampler)
            nfe = d.find_element(By.CSS_SELECTOR, f"[data-side={side}] .nfe")
            nfe.clear()
            nfe.send_keys("10")
        d.find_element(By.ID, "go").click()
        wait(lambda d: all(i.get_attribute("src") for i in d.find_elements(By.CSS_SELECTOR, ".result")))
        d.save_screenshot(str(out / "compare.png"))
        open_page("/restore", args.restore)
        time.sleep(1)
        wait(lambda d: d.find_element(By.ID, "canvas").get_attribute("data-base"))
        canvas = d.find_element(By.ID, "canvas")
        w = canvas.size["width"]
        ActionChains(d).move_to_element_with_offset(canvas, -w // 3, -w // 8).click_and_hold() \
            .move_by_offset(2 * w // 3, w // 5).release().perform()
        d.find_element(By.ID, "go").click()
        wait(lambda d: d.find_elements(By.CSS_SELECTOR, "img.result-panel"))
        d.save_screenshot(str(out / "restore.png"))
        d.get(f"{base}/run/{args.page or first}")
        wait(lambda d: d.find_element(By.ID, "settings").text)
        time.sleep(1)
        d.save_screenshot(str(out / "run.png"))
        d.get(f"{base}/")
        wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#runs tbody tr"))
        d.save_screenshot(str(out / "runs.png"))
    finally:
        d.quit()
        server.should_exit = True
    print(f"wrote {', '.join(sorted(p.name for p in out.glob('*.png')))} to {out}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
