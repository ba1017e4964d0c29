"""hubwizard: a guided, resumable installer and live monitor for JupyterHub on Docker Swarm."""

__version__ = "0.1.0"
