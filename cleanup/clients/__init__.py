"""The HTTP edge: the only package that imports ``requests`` and ``msal``."""
