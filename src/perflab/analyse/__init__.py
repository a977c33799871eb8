"""Analysis: the run's tables and the findings computed from them."""
