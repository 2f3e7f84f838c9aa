"""Everything that is neither a check nor the report: events, targets, config, GCP adapters, errors."""
