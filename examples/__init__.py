"""examples/: shipped in the package as hubwizard.examples (`hubwizard init --example`)."""
