"""synthfactory.datasets."""
