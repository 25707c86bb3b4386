"""Readers, validation, ICASSP arrangement, Tx-aware cropping and edge extraction."""
