"""Physics-based synthetic datasets written in the real on-disk layouts."""
