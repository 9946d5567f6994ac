"""What the notebooks show: readable output, the views of a run and the figures of each step."""
