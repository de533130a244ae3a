"""Reports on finished runs: result tables, comparisons and plots, read from results.json only."""
