"""Load test of difflab studio on loopback: N clients at once each ask for a sampling job and follow its event
stream to the end (as N browser tabs would); the server runs them on its worker(s) in turn. Reports how many
finished or failed, each job's wait and run time, the server's resident memory before, during and after, and how fast
a cancelled job frees its slot for the next one.

  .venv/bin/python bench/studio_load.py --run runs/demo --clients 16
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from mnist_recipes import cpu_flags  # noqa: E402


def call(base: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(base + path, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"}, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def client(base: str, run: str, k: int, args, out: dict) -> None:
    t0 = time.monotonic()
    try:
        job = call(base, "/api/sample", {"run": run, "num": args.num, "nfe": args.nfe, "seed": k})["job"]
        first = None
        with urllib.request.urlopen(f"{base}/api/jobs/{job}/events", timeout=600) as stream:
            for line in stream:
                if line.startswith(b"data: "):
                    e = json.loads(line[6:])
                    if e["type"] == "plan" and first is None:
                        first = time.monotonic()
                    if e["type"] in ("done", "failed", "cancelled"):
                        out[k] = {"state": e["type"], "wait_s": round((first or time.monotonic()) - t0, 2),
                                  "total_s": round(time.monotonic() - t0, 2)}
    except Exception as e:  # noqa: BLE001 - a failed client is a result of the load test
        out[k] = {"state": "client error", "error": str(e)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/demo", help="a run folder (or a folder of runs: the first is used)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--num", type=int, default=16, help="samples per job")
    ap.add_argument("--nfe", type=int, default=10)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()

    from difflab.studio.app import Studio, serve_in_thread

    out_dir = ROOT / "bench" / "out" / "studio_load"
    studio = Studio([Path(args.run)], out_dir, workers=args.workers)
    base, server = serve_in_thread(studio)
    run = call(base, "/api/runs")["runs"][0]["id"]
    results: dict = {}
    client(base, run, -1, args, results)  # warm: the pipeline loaded, one job alone
    rss = {"before": call(base, "/api/status")["rss_mb"]}
    peak, stop = [0.0], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], call(base, "/api/status")["rss_mb"] or 0)
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()
    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(base, run, k, args, results)) for k in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    stop.set()
    rss.update(during_peak=peak[0], after=call(base, "/api/status")["rss_mb"])
    alone = results.pop(-1)
    # a long job cancelled after its first step: how soon does the job queued behind it start?
    long = call(base, "/api/sample", {"run": run, "num": 64, "nfe": 250, "seed": 0})["job"]
    nxt = call(base, "/api/sample", {"run": run, "num": 2, "nfe": 2, "seed": 1})["job"]
    while call(base, f"/api/jobs/{long}")["events"] < 2:
        time.sleep(0.02)
    tc = time.monotonic()
    call(base, f"/api/jobs/{long}/cancel", {})
    while call(base, f"/api/jobs/{nxt}")["state"] == "queued":
        time.sleep(0.01)
    freed = time.monotonic() - tc
    states = [r["state"] for r in results.values()]
    report = {"command": " ".join(sys.argv), "machine": cpu_flags(), "clients": args.clients, "workers": args.workers,
              "job": f"{args.num} samples at {args.nfe} NFE", "done": states.count("done"),
              "failed": len(states) - states.count("done"), "wall_s": round(wall, 1), "alone_s": alone["total_s"],
              "wait_s_max": max(r.get("wait_s", 0) for r in results.values()),
              "total_s_max": max(r.get("total_s", 0) for r in results.values()), "rss_mb": rss,
              "cancel_frees_slot_s": round(freed, 2), "cancelled_state": call(base, f"/api/jobs/{long}")["state"]}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    server.should_exit = True


if __name__ == "__main__":
    main()
