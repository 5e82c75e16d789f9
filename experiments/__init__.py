"""Command-line entry points: train, evaluate, benchmark."""
