"""synthfactory.training."""
