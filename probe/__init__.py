"""How postdeploy reaches the revision under test: HTTP and ID tokens, golden paths, and the probe inside its image."""
