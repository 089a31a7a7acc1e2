"""The pipeline's stages, one asset group each.

The Dagster UI lists groups by name (the lineage sidebar, the catalogue: a case-insensitive sort
that reads digits as numbers), never in the order of the graph, so each name starts with its
place in the pipeline: the lists read 1_ingest, 2_validate, 3_diff, 4_apply, 5_report."""

INGEST = "1_ingest"
VALIDATE = "2_validate"
DIFF = "3_diff"
APPLY = "4_apply"
REPORT = "5_report"
#: In pipeline order: what a sync run materializes.
PIPELINE = (INGEST, VALIDATE, DIFF, APPLY, REPORT)
