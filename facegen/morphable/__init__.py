"""Face models: the MorphableModel object, the built-in model, readers for downloaded formats."""
