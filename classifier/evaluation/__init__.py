"""Judging a trained model's answers: metrics, the "not sure" rule, plots (numpy only but the plots).

report.py writes the reports (`evaluate()`, and `write_report` for training); the confidence rule is what every
answer (predict, the app, the batch commands) goes through, at the threshold the metrics suggest.
"""
