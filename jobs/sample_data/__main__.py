"""``python -m jobs.sample_data``."""
import sys

from jobs.sample_data import main

sys.exit(main())
