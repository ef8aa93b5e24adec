"""NPG and TRPO: one natural-gradient trust-region step per rollout (seed 004 ch. 6-7, seed 003)."""
