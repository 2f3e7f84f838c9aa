"""Google APIs behind small protocols: Cloud Run, Cloud Logging, Cloud Monitoring, Cloud Storage, secrets; and local log files."""
