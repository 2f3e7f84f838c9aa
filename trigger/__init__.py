"""From a Cloud Build message to the revision to validate: decode it, detect the deploys, resolve each revision."""
