"""Denoising diffusion model with classifier guidance after Wolleb et al. (2022)."""
