"""Configuration files shipped with recjobs (default.yaml, local.yaml, cluster.yaml, Spark files)."""
from importlib.resources import files
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent
# default.yaml as a resource: readable also when the package comes from a --py-files zip
DEFAULT_RESOURCE = files(__name__).joinpath("default.yaml")
