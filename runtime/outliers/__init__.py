"""Outliers: score how unusual a digit is for a model, against ranges calibrated on held-out digits."""
