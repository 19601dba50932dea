"""Inverse problems with a diffusion prior: posterior samplers through the model contract, the restore job's inputs and report."""
