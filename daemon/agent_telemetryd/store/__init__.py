"""The SQLite buffer: one file, WAL, one writer thread, many readers."""
