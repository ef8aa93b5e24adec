"""Off-policy policy gradient with importance sampling (registry name ``offpg``)."""
