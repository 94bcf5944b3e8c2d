"""``python -m otel_aspects check FILE...``: see :mod:`otel_aspects.cli`."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
