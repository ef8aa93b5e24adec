"""Learning from preferences (RLHF for control, Rossi ch. 14; Christiano et al. 2017): docs/rlhf.md."""
