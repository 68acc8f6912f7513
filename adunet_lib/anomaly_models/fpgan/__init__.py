"""Fixed-Point GAN after Siddiquee et al. (2019): lesion → healthy translation as a reconstruction model."""
