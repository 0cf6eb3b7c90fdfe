"""Configuration files shipped with recjobs (default.yaml, local.yaml, cluster.yaml, Spark files)."""
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent
