"""Preprocessing: ADC/hbv onto the T2W grid, invertible gland crop, masking, normalisation, slices."""
