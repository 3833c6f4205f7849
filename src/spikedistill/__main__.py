import sys

from spikedistill.cli import main

sys.exit(main())
