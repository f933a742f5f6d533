"""Prefect tasks: thin wrappers over colorize_core with retries, tags and logging."""
