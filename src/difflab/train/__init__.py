"""Training: the loop, EMA, checkpoints."""
