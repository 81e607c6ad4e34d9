"""Plumbing shared by every process that talks to Temporal (worker, portal, CLI).

One settings reader, one data converter, one client factory. Imports nothing of workflows/,
activities/, worker/ or portal/.
"""
