"""Latent models: the (hierarchical) VAE, trained by its ELBO."""
