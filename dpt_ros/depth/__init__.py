"""Depth values: metric alignment, accuracy against ground truth, PCC against a reference."""
