"""Sampler accuracy against exact scores, difflab vs diffusers: a thin wrapper of `difflab bench samplers`.

Run: .venv/bin/pip install -c bench/constraints.txt -r bench/requirements.txt
     OMP_NUM_THREADS=1 .venv/bin/python bench/samplers.py --out runs/bench_samplers
(any flag of `difflab bench samplers --help` passes through); results: runs/bench_samplers/bench.{md,json,png}.
"""
import sys

from difflab.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", "samplers", *sys.argv[1:]]))
