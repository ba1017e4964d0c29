#!/usr/bin/env bash
# The main job, end to end on this machine: set up, bring up the lab (1 hub + 2 nodes, a
# registry, an ACME server), install JupyterHub on it with hubwizard, and verify it.
# The lab stays up afterwards so you can explore it: `hubwizard monitor -c lab/site.toml`;
# remove it with `hubwizard lab down --name demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p lab
hubwizard lab up --name demo --nodes "${NODES:-2}" --spares 1 -o lab/site.toml
hubwizard plan -c lab/site.toml
hubwizard apply -c lab/site.toml --yes
hubwizard verify -c lab/site.toml
hubwizard status -c lab/site.toml
