"""synthfactory.evaluation."""
