"""Artifact storage: uploaded files, checkpoints and adapters on disk."""
