"""What DAGs and the demo use to run jobs: the embedded Airflow home, the child-process runner."""
