"""The shared core every stage stands on: typed artifacts, errors and parameter checks, lineage, atomic writes,
the registry, and the identity rules (split, blocks, non-mated sampling, FMR threshold). Imports nothing else of
fiqa."""
