"""The ingest stage and what it uses: the ingest job, near-duplicate join, suppression, retag."""
