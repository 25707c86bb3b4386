"""Shared plumbing: errors, parameter loading and validation, atomic file I/O."""
