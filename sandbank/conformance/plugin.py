"""pytest plugin entry point (``pytest11``): makes the conformance fixtures available."""
