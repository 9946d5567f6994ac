"""The bottom layer: paths, atomic writes, parameters, the plan of orderings, prompts. Imports nothing above it."""
