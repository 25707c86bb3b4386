"""The constant-SDE decoupled diffusion of RadioDiff, separate from the network (pure functions)."""
