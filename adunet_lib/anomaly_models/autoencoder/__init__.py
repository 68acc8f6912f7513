"""Dense and spatial autoencoders after Baur et al. (2021)."""
