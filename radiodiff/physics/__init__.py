"""Propagation physics: free-space and log-distance loss, ray casting, geodesics, antenna gains."""
