"""difflab: diffusion models done by the book."""
__version__ = "0.1.0"
