"""What a user reads first in wells.csv: its leading columns, in order (docs/output.md), written out here rather
than taken from the code under test."""

WELLS_CSV_LEADING_COLUMNS = [
    "plate",
    "well",
    "site",
    "channel",
    "object_count",
    "mean_intensity",
    "timepoint",
    "file",
    "worker",
]
