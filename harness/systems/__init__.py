"""Systems under test: how to run a cluster of them and talk to it (``base.System``)."""
