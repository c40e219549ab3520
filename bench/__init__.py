"""Benchmarks that print one table of figures against anchors measured in the same run."""
