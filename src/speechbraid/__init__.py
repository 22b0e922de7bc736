"""speechbraid: decoder-only speech LLMs that braid speech and text into one sequence."""

__version__ = "0.1.0"
