"""synthfactory.models."""
