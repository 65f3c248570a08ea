"""Benchmarks (scripts, not tests): python bench/train_step.py, python bench/decode.py."""
