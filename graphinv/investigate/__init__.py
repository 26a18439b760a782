"""Investigation: cases, the saved-query library and the Neo4j Browser kit."""
