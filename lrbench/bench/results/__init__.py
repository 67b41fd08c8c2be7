"""The run folder and what is read from it: the CSV records, the plan and the run lock, derived
metrics, the comparison of two runs, the Markdown report and its plots, and the status of a run."""
