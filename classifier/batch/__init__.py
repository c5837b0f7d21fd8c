"""Apache Beam, the batch commands' runner: layer 4 (inference, training's feature pass) at scale.

runner.py starts Beam and reads paths through it; handlers.py holds what Beam runs on its workers; rows.py the CSV
rows of `classifier.batch_predict` (no Beam); predictions.py and features.py the two pipelines. Only this package
imports apache_beam, and Beam is optional: without it the batch commands stop with one line saying how to install it.
"""
