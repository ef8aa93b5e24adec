"""REINFORCE / vanilla policy gradient (registry name ``reinforce``)."""
