"""Pure building blocks, no Spark: config, the drop contract, hosts, images, policy, run identity."""
