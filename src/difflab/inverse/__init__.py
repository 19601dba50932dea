"""Inverse problems: measurement operators, posterior samplers through the model contract, classical baselines."""
