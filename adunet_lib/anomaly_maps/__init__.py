"""Anomaly maps a = Φ(|x − G(x)|), put back on each case's original T2W grid, and their quality."""
