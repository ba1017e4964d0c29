#!/usr/bin/env bash
# The main job, end to end on this machine: set up, bring up the lab (1 hub + 2 nodes, a
# registry, an ACME server), install JupyterHub on it with hubwizard, and verify it.
# The lab stays up afterwards so you can explore it: `hubwizard monitor -c lab/site.toml`;
# remove it with `hubwizard lab down --name demo`.
# scripts/test.sh runs this too (its "demo" group) under another lab name and site file:
# DEMO_NAME and DEMO_SITE (defaults: demo, lab/site.toml), so it never touches your demo lab.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${DEMO_NAME:-demo}
site=${DEMO_SITE:-lab/site.toml}
bash scripts/setup.sh
mkdir -p "$(dirname "$site")"
hubwizard lab up --name "$name" --nodes "${NODES:-2}" --spares 1 -o "$site"
hubwizard plan -c "$site"
hubwizard apply -c "$site" --yes
hubwizard verify -c "$site"
hubwizard status -c "$site"
