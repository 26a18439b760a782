"""Detection: the rarity-weighted account projection and Leiden rings."""
