"""`python -m viewer [--world NAME] ...`: the same as `worldmodel play`."""

import sys

from viewer.app import main

sys.exit(main())
