"""The team dashboard: a static page and its assets; its data comes from the analytics API."""
