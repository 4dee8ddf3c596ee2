"""The fine-tuning run: losses, the Trainer and its settings, samplers, and what is fitted on validation afterwards."""
