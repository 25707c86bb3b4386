"""Scoring predicted radio maps: per-image metrics, whole-set RMSE and per-sample tables."""
