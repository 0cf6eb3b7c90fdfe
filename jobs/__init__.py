"""Spark jobs of the recjobs nightly recommendation suite (one module per job)."""
