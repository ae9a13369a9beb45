"""Benchmarks of maint against the local control plane with the fake kubelet (issue 6).

Run with ``make bench`` or ``python -m bench``; see ``bench/README.md`` for what is measured
and how, and ``bench/results.json`` for the last run's numbers.
"""
