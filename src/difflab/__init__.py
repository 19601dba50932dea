"""difflab: diffusion models done by the book."""
__version__ = "0.1.0"


def __getattr__(name: str):
    """`difflab.load(path)` -> Pipeline, imported on first use (keeps `import difflab` light)."""
    if name in ("load", "Pipeline"):
        from difflab import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'difflab' has no attribute {name!r}")
