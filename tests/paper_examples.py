"""Worked examples of the papers shared by several test modules."""

#: The database of Figure 1 (Wong 2025): |D| = 8, Proposition 2.1 gives 6, rank 5 (Example 2.2).
FIGURE_1 = [
    ("Astrid", "born_in", "Singapore"), ("Bernard", "born_in", "Singapore"), ("Colin", "born_in", "Malaysia"),
    ("Astrid", "lives_in", "Malaysia"), ("Bernard", "lives_in", "Singapore"), ("Colin", "lives_in", "Malaysia"),
    ("Malaysia", "currency", "Ringgit"), ("Singapore", "currency", "Dollar"),
]
