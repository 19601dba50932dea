"""The restoration tasks and posterior methods by name (no torch import: the command line lists them)."""
TASKS = ("inpaint", "superres", "deblur", "mri", "ct")
METHODS = ("project", "repaint", "dps", "dds", "moment", "conditional")  # conditional: a run trained for super-resolution
