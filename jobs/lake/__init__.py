"""Delta Lake side: Spark session, table schemas, MERGE helpers, the Lake API, maintenance."""
