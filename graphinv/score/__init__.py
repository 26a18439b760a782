"""Scoring: ring features against the platform baseline, scores, explanations, fitted weights."""
