"""A plugin whose import fails (for the warning test)."""

raise ImportError("brokenplug needs a library that is not installed")
