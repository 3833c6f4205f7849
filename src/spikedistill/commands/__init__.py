"""CLI sub-commands: each module defines ``register(subparsers)`` (discovered by ``cli.py``)."""
