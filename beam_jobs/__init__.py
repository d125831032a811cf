"""synthfactory.beam_jobs."""
