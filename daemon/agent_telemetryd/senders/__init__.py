"""Senders: turn a batch of pending events into the backend's request.

Senders know nothing of SQLite: the uploader hands them plain `OutboundBatch` values.
"""
