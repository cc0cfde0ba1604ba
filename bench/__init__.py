"""Side-by-side benchmarks of brs_autopatch and the alternatives (issue 5, item 7)."""
