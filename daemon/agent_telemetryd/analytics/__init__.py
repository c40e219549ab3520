"""Agent analytics: one vocabulary for LLM and tool data, prices, and what the views compute
that is not SQL. Pure modules; the SQL lives in `store/analytics_sql.py`."""
