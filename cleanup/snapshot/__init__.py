"""Snapshot: read each environment into DataFrames."""
