"""Natural Policy Gradient (registry name ``npg``): TRPO's step without the line search (Rossi ch. 6)."""
