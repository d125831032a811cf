"""Configs of the Beam jobs (loaded by file path with ml_collections config_flags)."""
