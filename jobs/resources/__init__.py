"""Package data: table schemas, expectation suites, the jurisdiction policy and Spark's log config."""
