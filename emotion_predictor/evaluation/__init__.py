"""Scoring forecasters on a split, the built-in baselines, metrics and the side-by-side comparison."""
