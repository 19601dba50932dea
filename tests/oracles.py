"""Exact denoisers for test data (the library's own, checked against autograd of the diffused density in test_samplers)."""
from difflab.eval.exact import MixtureDenoiser

__all__ = ["MixtureDenoiser"]
