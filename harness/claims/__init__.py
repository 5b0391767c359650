"""Each claim's decision as a pure function of tables: no training, so every decision is tested.

One module per claim (``harness.claims.<claim id with underscores>``) holds the claim's id, its
threshold with the source of its value, what its negative control destroys
(``harness.controls``), and ``decide(...)``: from the arrays a study produced (memorization
scores with their per-model rows, a removal experiment's per-model correctness, ...) to a
:class:`harness.verdict.Decision` (decisive statistic, threshold, control). The claim tests in
``claims/`` train the models, call ``decide`` and write the report; ``tests/test_decisions.py``
gives every ``decide`` a supporting, a refuting and a straddling table.
"""
