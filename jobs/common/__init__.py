"""Shared plumbing for the jobs: configuration, Spark session, Delta I/O and the run log."""
