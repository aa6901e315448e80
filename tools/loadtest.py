"""Load test of a running `lte serve`: the same as `lte bench serve --url URL [...]`.

    python tools/loadtest.py --url http://127.0.0.1:8765 --config configs/serve/tiny.yaml \
        --concurrency 16 --ops 320
"""

from __future__ import annotations

import sys

from lte.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "serve", *sys.argv[1:]]))
