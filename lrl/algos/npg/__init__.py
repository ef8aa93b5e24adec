"""Natural Policy Gradient (registry name ``npg``): TRPO's step without the line search (seed 004 ch. 6)."""
