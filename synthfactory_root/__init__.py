"""synthfactory: a workflow-orchestrated factory of synthetic labelled datasets."""
__version__ = "0.1.0"
