"""`python -m deploy_render [--check]`: write the container stacks' rendered files, or only compare them."""

import sys

from .manifests import main

sys.exit(main())
