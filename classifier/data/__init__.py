"""Images in: image files and folders -> checked, labelled file lists -> tf.data pipelines.

The first stage of the pipeline: the accepted formats, decoding within a memory budget, augmentation, the
built-in datasets' downloads and converters, and the training folder the web page fills.
"""
