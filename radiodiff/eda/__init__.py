"""Exploratory data analysis of both datasets: structure and statistics as figures + eda.json (SPEC part 5)."""
