"""Allow ``python -m vip_elector``."""

import sys

from vip_elector.cli import main

sys.exit(main())
