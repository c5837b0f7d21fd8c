"""Run `python -m classifier.train ARGS` with the CPU split into N logical devices: tests/logical_cpus.py N ARGS...

Logical devices must be configured before TensorFlow initialises its runtime, hence a fresh process.
This is how CI gives MirroredStrategy two devices without a GPU.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classifier._tf import tf  # noqa: E402

count = int(sys.argv[1])
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)

from classifier.train import main  # noqa: E402

sys.exit(main(sys.argv[2:]))
