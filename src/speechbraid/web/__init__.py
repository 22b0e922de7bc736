"""The browser demo (``speechbraid serve``)."""
