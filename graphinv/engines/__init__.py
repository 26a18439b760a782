"""Engines that run a sweep's detection somewhere other than this process (Apache Spark)."""
