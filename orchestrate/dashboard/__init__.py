"""The live web dashboard: its server, its routes, what it reads, and the page."""
