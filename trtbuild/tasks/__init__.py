"""Tasks: what a user runs end to end on top of the stages and runners — infer, eval, bench, the accuracy budget,
the precision report, doctor and the ``make engine`` pipeline."""
