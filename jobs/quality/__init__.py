"""The expectations gate: Great Expectations suites run before every publish."""
