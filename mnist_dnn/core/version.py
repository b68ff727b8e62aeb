"""The package's version, here in core so that core (metrics.json records it) never imports the package top."""

__version__ = "0.2.0"
