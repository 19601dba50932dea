"""The studio's web app (FastAPI): pages, a JSON API, and server-sent events that stream each job's trajectory.

  GET  /  /sample  /restore  /compare  /run/{id}        the pages (static HTML + studio.js)
  GET  /api/runs, /api/runs/{id}                       the runs found, one run's settings, loss curve and files
  GET  /api/runs/{id}/files/{name}                     a file the run page shows (samples.png, loss.png, ...)
  GET  /api/runs/{id}/test-image?index=k               a held-out image of the run's data (the restore page's truth)
  POST /api/sample                                     JSON -> a queued job
  POST /api/restore                                    a form (settings, optional image and mask uploads) -> a job
  GET  /api/jobs/{id}/events                           the job's events as text/event-stream, from the first
  POST /api/jobs/{id}/cancel;  GET /api/jobs/{id}      cancel; state
  GET  /api/jobs/{id}/files/{name}                     the job's samples.png / samples.npz / measurement.npz
  GET  /api/status                                     the queue and the server's memory

Every error is one JSON line {"error": ...} with a 4xx status; the server keeps serving. Files are read only from the
runs found and written only under the output folder.
"""
from __future__ import annotations

import json
import resource
import threading
from collections import OrderedDict
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from starlette.datastructures import UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from difflab.config import coerce_fields
from difflab.errors import UserError
from difflab.studio.catalog import Catalog
from difflab.studio.jobs import JobQueue
from difflab.studio.work import RestoreRequest, SampleRequest, png, read_upload, restore_job, sample_job

STATIC = Path(__file__).parent / "static"
PAGES = {"/": "index.html", "/sample": "sample.html", "/restore": "restore.html", "/compare": "compare.html"}
JOB_FILES = ("samples.png", "samples.npz", "measurement.npz", "settings.json")
MAX_UPLOAD = 2_000_000  # bytes per uploaded image


class Studio:
    """The state behind the app: the runs, their loaded pipelines (a few, most recent first), the job queue."""

    def __init__(self, roots: list[Path], out: Path, workers: int = 1, keep_pipelines: int = 4):
        self.catalog, self.out = Catalog(roots), Path(out).resolve()
        self.jobs = JobQueue(workers=workers)
        self.pipes: OrderedDict[str, Any] = OrderedDict()
        self.keep, self.lock = keep_pipelines, threading.Lock()

    def pipe(self, run_id: str):
        from difflab.pipeline import load

        entry = self.catalog.get(run_id)
        with self.lock:
            if run_id not in self.pipes:
                self.pipes[run_id] = load(entry.path)
                while len(self.pipes) > self.keep:
                    self.pipes.popitem(last=False)
            self.pipes.move_to_end(run_id)
            return self.pipes[run_id]

    def job_dir(self, job_id: str) -> Path:
        return self.out / "jobs" / job_id


def _request(cls, values: dict, section: str):
    """A frozen request dataclass from loose values (form fields are strings), each coerced as a config key is."""
    known = {f.name for f in fields(cls)}
    clean = {k: v for k, v in values.items() if k in known and v not in (None, "")}
    if "classes" in clean and isinstance(clean["classes"], str):
        clean["classes"] = [c.strip() for c in clean["classes"].split(",") if c.strip()]
    return cls(**coerce_fields(cls, clean, section))


def create_app(studio: Studio) -> FastAPI:
    app = FastAPI(title="difflab studio", docs_url=None, redoc_url=None)

    @app.exception_handler(UserError)
    async def user_error(request: Request, e: UserError):
        return JSONResponse({"error": str(e)}, status_code=400)

    @app.exception_handler(KeyError)
    async def unknown(request: Request, e: KeyError):
        return JSONResponse({"error": f"no such job {e.args[0]!r}: it ended long ago or never existed"}, 404)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        return JSONResponse({"error": f"{e.detail}: {request.url.path}"}, e.status_code)

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {"loc": ["body"], "msg": "malformed request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse({"error": f"{where or 'request'}: {first.get('msg')}"}, 422)

    def page(name: str) -> HTMLResponse:
        return HTMLResponse((STATIC / name).read_text())

    for route, name in PAGES.items():
        app.add_api_route(route, (lambda n: lambda: page(n))(name), methods=["GET"], response_class=HTMLResponse)

    @app.get("/run/{run_id}", response_class=HTMLResponse)
    def run_page(run_id: str):
        studio.catalog.get(run_id)
        return page("run.html")

    @app.get("/static/{name}")
    def static(name: str):
        if name not in ("studio.js", "studio.css"):
            raise UserError(f"no static file {name!r}")
        return FileResponse(STATIC / name)

    @app.get("/api/options")
    def options():
        from difflab.inverse.names import METHODS, TASKS
        from difflab.samplers.registry import SAMPLERS
        from difflab.schedules.grids import GRIDS

        return {"samplers": ["auto", *SAMPLERS], "grids": ["auto", *GRIDS], "tasks": [*TASKS, "edit"],
                "methods": list(METHODS)}

    @app.get("/api/runs")
    def runs():
        studio.catalog.refresh()
        return {"runs": [e.describe() for e in studio.catalog.runs.values()]}

    @app.get("/api/runs/{run_id}")
    def run(run_id: str):
        entry = studio.catalog.get(run_id)
        metrics = []
        mfile = entry.path / "metrics.jsonl"
        if mfile.is_file():
            for line in mfile.read_text().splitlines():
                try:
                    m = json.loads(line)
                except ValueError:
                    continue
                if "loss" in m and "step" in m:
                    metrics.append([m["step"], m["loss"]])
        summary = {}
        if (entry.path / "summary.json").is_file():
            try:
                summary = json.loads((entry.path / "summary.json").read_text())
            except ValueError:
                summary = {}
        return {**entry.describe(), "config": entry.config, "loss": metrics[-2000:], "summary": summary}

    @app.get("/api/runs/{run_id}/files/{name}")
    def run_file(run_id: str, name: str):
        return FileResponse(studio.catalog.file(run_id, name))

    @app.get("/api/runs/{run_id}/test-image")
    def test_image(run_id: str, index: int = 0):
        x = _truth(studio, run_id, index)
        return {"image": png(x), "shape": list(x.shape[1:])}

    @app.post("/api/sample")
    async def sample(request: Request):
        try:
            body = await request.json()
        except ValueError:
            raise UserError("the body must be JSON: {\"run\": ..., \"nfe\": 20, ...}") from None
        if not isinstance(body, dict) or "run" not in body:
            raise UserError("the body must be a JSON object naming the run: {\"run\": ID, ...}")
        req = _request(SampleRequest, body, "sample")
        pipe = studio.pipe(str(body["run"]))
        work = sample_job(pipe, req)  # checks the request now: a bad one never queues
        job = studio.jobs.submit("sample", lambda j: work(j, studio.job_dir(j.id)))
        return {"job": job.id}

    @app.post("/api/restore")
    async def restore(request: Request):
        form = await request.form()
        run_id = str(form.get("run", ""))
        pipe = studio.pipe(run_id)
        req = _request(RestoreRequest, {k: v for k, v in form.items() if isinstance(v, str)}, "restore")
        shape = tuple(pipe.data_spec.shape)
        image, mask = form.get("image"), form.get("mask")
        if isinstance(image, UploadFile) and image.filename:
            truth = read_upload(await _read(image, "image"), shape, "image")
        else:
            truth = _truth(studio, run_id, int(form.get("index") or 0))
        keep = None
        if isinstance(mask, UploadFile) and mask.filename:
            drawn = read_upload(await _read(mask, "mask"), (1, *shape[1:]), "mask")[0, 0]
            keep = (drawn < 0).float()  # painted (white) pixels are the missing ones
        work = restore_job(pipe, req, truth, keep)
        job = studio.jobs.submit(req.task, lambda j: work(j, studio.job_dir(j.id)))
        return {"job": job.id}

    @app.get("/api/jobs/{job_id}/events")
    def events(job_id: str):
        job = studio.jobs.get(job_id)
        stream = (f"data: {json.dumps(e)}\n\n" for e in job.follow())
        return StreamingResponse(stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/api/jobs/{job_id}")
    def job_state(job_id: str):
        return studio.jobs.get(job_id).status()

    @app.post("/api/jobs/{job_id}/cancel")
    def cancel(job_id: str):
        return studio.jobs.cancel(job_id).status()

    @app.get("/api/jobs/{job_id}/files/{name}")
    def job_file(job_id: str, name: str):
        studio.jobs.get(job_id)
        path = studio.job_dir(job_id) / name
        if name not in JOB_FILES or not path.is_file():
            raise UserError(f"the job {job_id} has no file {name!r} ({', '.join(JOB_FILES)} once it is done)")
        return FileResponse(path, filename=f"{job_id}-{name}")

    @app.get("/api/status")
    def status():
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
        return {"jobs": studio.jobs.counts(), "rss_mb": _rss_mb(), "max_rss_mb": round(peak, 1),
                "runs": len(studio.catalog.runs), "pipelines_loaded": len(studio.pipes)}

    return app


def serve_in_thread(studio: Studio, host: str = "127.0.0.1"):
    """(base URL, uvicorn server): the app on a free port of `host`, served by a daemon thread (tests, benches);
    stop it with server.should_exit = True."""
    import socket
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(studio), host=host, port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True, name="studio-server").start()
    while not server.started:
        time.sleep(0.05)
    return f"http://{host}:{port}", server


def _rss_mb() -> float | None:
    """The server's resident memory now (Linux /proc), MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


async def _read(upload: UploadFile, what: str) -> bytes:
    data = await upload.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise UserError(f"the {what} is larger than {MAX_UPLOAD / 1e6:.0f} MB: upload a smaller image")
    return data


def _truth(studio: Studio, run_id: str, index: int):
    """Held-out image k of the run's data (its test split where it has one), (1, C, H, W)."""
    from difflab.data.dataset import SPLIT_SETS

    entry = studio.catalog.get(run_id)
    pipe = studio.pipe(run_id)
    data = pipe.cfg.data.pixels
    data = replace(data, split="test") if data.name in SPLIT_SETS else data
    x = _dataset(data).x
    if not 0 <= index < len(x):
        raise UserError(f"index must be 0..{len(x) - 1} for the data of {entry.id}, got {index}")
    return x[index:index + 1]


_DATA: dict = {}


def _dataset(cfg):
    if cfg not in _DATA:
        from difflab.data.build import build_dataset

        _DATA.clear()
        _DATA[cfg] = build_dataset(cfg)
    return _DATA[cfg]
