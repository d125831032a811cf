"""synthfactory.tfds_builders."""
