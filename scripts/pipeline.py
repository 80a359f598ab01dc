"""The main job on the embedded default, in one command (`python scripts/pipeline.py --help`): see inference.pipeline."""

import sys

from inference.pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main())
