"""Benchmarks of idnode: codec, node front doors, Locust users and the capacity report."""
