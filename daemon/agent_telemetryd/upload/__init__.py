"""The uploader: the one place that joins store, consent and sender."""
