"""Segment models and learned policies: training, model files, the registry, off-policy evaluation."""
