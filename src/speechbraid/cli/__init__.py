"""Command-line entry points: thin wrappers that parse, load a config and call one library function."""
