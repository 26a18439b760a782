"""The Neo4j store: Bolt store, all Cypher, offline bulk import and the local server."""
