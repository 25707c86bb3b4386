"""Training: one engine (``radiodiff.train.engine``) that every radiodiff model trains with.

A model plugs in as a :class:`~radiodiff.train.engine.TrainTask` (its modules, optimizer
parameter groups, loss per optimizer, evaluation and export); the engine owns the loop around
it: Accelerate (device, mixed precision, gradient accumulation), AdamW with RadioDiff's power
LR decay, gradient clipping before the step, a NaN/Inf guard, EMA of the model, atomic
checkpoints with exact resume, CSV/TensorBoard logs and the atomic export of the EMA model.
"""
