"""``python -m mavae ...`` (and ``torchrun ... -m mavae fit ...``): the ``mavae`` command."""
from mavae.cli import app

app(prog_name="mavae")
