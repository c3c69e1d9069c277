"""Herald: reliable outbound HTTP notifications."""

__version__ = "0.1.0"
