"""The engine: check -> diff -> apply -> verify per step and host (runner), the registry of
Python calls recipes name, and the facts every step needs. Imports no Textual and no lab."""
