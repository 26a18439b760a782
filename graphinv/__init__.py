"""graphinv: find coordinated account rings that distil AI models."""
