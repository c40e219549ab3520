"""The uploader: the one place that joins store, consent and sender (DESIGN §2, §9)."""
