"""``python -m speechbraid`` == the ``speechbraid`` console command."""

import sys

from speechbraid.cli.main import main

sys.exit(main())
