"""Prefect flows of gestan-release: thin compositions of `gestan_release` functions."""
