"""Condition kinds, one module each: label, caption (with its tokenizer and text encoders), lowres."""
