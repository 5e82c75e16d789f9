"""Training and evaluation: optimizer groups, steps, checkpoints, the trainer loop."""
