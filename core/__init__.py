"""The small core: the model and the protocols it needs, config, errors, the runner and the pipeline that joins the rest."""
