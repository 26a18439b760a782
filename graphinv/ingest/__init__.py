"""Ingest: read and validate input folders, quarantine bad rows, pseudonymise, load into a store."""
