"""Other libraries' formats: diffusers' save_pretrained folders, both ways."""
