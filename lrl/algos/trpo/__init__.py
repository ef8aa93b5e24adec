"""NPG and TRPO: one natural-gradient trust-region step per rollout (Rossi ch. 6-7, Fragkiadaki)."""
