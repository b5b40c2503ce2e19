"""Images stage of the pure, Dagster-free library."""
