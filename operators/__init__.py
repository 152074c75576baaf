"""Built-in degradation operators and noise models (a plugin like any other)."""
