"""Latent diffusion: a trained autoencoder run as the codec of a diffusion run on its latents, and the whole model's bound."""
