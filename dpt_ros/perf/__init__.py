"""Perf counters and rolling stats, and the perf JSON built from them."""
