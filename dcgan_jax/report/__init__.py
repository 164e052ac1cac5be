"""A trained run's report: figures, nearest training images and an HTML page."""
