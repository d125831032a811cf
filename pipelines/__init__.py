"""synthfactory.pipelines."""
